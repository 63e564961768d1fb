//! What `deploy/` ships, rendered without a cluster: the kustomize entry points and the Helm
//! chart through our own kubectl and helm (tests/k8s/build.sh's, not whatever is on PATH), read
//! back as JSON objects, with the readers the manifest checks share. Readers of one concern live
//! in submodules: the `restricted` Pod Security Standard, and managed Redis's credentials and TLS.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::control_plane::KubectlOutput;
use k8s_openapi::serde::Deserialize;
use serde_json::{Value, json};

pub mod pod_security;
pub mod redis_access;

pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
pub const CHART: &str = "deploy/helm/exactly-once";
pub const CRD_FILE: &str = "crds/exactlyonceconsumers.exactlyonce.dev.yaml";
pub const CHART_CRD_FILE: &str =
    "deploy/helm/exactly-once/crds/exactlyonceconsumers.exactlyonce.dev.yaml";
/// The kustomize install's namespace, and the one the chart is rendered into (as README does).
pub const NAMESPACE: &str = "exactly-once";
pub const OPERATOR_IMAGE: &str = "exactlyonce/operator";
pub const ORDER_SERVICE_IMAGE: &str = "exactlyonce/order-service";
pub const CONSUMER_IMAGE: &str = "exactlyonce/inventory-consumer";
pub const SAMPLE: &str = "inventory";

// ---- the tools ----

/// tests/k8s/build.sh's bin dir, found as the cluster harness finds it: `K8S_BIN_DIR`, else the
/// script's answer (instant when its cache is warm).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::control_plane::build_binaries().unwrap_or_else(|e| panic!("{e:#}")))
}

/// Our `kubectl` or `helm` in the repository root. helm's cache, config and data go to a
/// directory of this call's own, and no kubeconfig is reachable: nothing here talks to a
/// cluster. A missing tool fails the test; it never skips it.
pub fn run(tool: &str, args: &[&str]) -> KubectlOutput {
    let program = bin_dir().join(tool);
    assert!(
        program.is_file(),
        "{} is missing: tests/k8s/build.sh builds it",
        program.display()
    );
    let home = tempfile::tempdir().expect("a temporary directory for helm");
    let output = Command::new(&program)
        .args(args)
        .current_dir(REPO)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    KubectlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn helm_args<'a>(command: &[&'a str], sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = command.to_vec();
    for set in sets {
        args.extend(["--set", *set]);
    }
    args
}

/// `--set a --set b`, for messages.
pub fn describe_sets(sets: &[&str]) -> String {
    sets.iter().map(|s| format!(" --set {s}")).collect()
}

// ---- renders ----

/// One rendered install: the command that made it and its objects.
pub struct Render {
    pub what: String,
    pub objects: Vec<Value>,
}

impl Render {
    pub fn new(what: String, output: KubectlOutput) -> Self {
        let yaml = output.expect_success(&what);
        let objects = serde_yaml::Deserializer::from_str(&yaml)
            .map(|doc| {
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{what} printed bad YAML: {e}"))
            })
            .filter(|object| !object.is_null())
            .collect();
        Self { what, objects }
    }

    pub fn of_kind<'a, 'k>(
        &'a self,
        kind: &'k str,
    ) -> impl Iterator<Item = &'a Value> + use<'a, 'k> {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    pub fn find(&self, kind: &str, name: &str, namespace: Option<&str>) -> Option<&Value> {
        self.of_kind(kind)
            .find(|o| o["metadata"]["name"] == name && namespace_of(o) == namespace)
    }

    pub fn sample(&self) -> &Value {
        let mut samples = self
            .of_kind("ExactlyOnceConsumer")
            .filter(|o| o["metadata"]["name"] == SAMPLE);
        let sample = samples
            .next()
            .unwrap_or_else(|| panic!("{}: no ExactlyOnceConsumer {SAMPLE}", self.what));
        assert!(samples.next().is_none(), "{}: two samples", self.what);
        sample
    }

    /// Every object that holds a pod template, with that template's pod spec.
    pub fn pods(&self) -> Vec<(&Value, &Value)> {
        let pods: Vec<_> = self
            .objects
            .iter()
            .filter_map(|o| Some((o, pod_spec(o)?)))
            .collect();
        // The operator, the order service and Redis: an empty list would pass every check.
        assert!(
            pods.len() >= 3,
            "{}: only {} pod templates",
            self.what,
            pods.len()
        );
        pods
    }

    /// The one Deployment running `image` (any tag), with that container.
    pub fn deployment_running(&self, image: &str) -> (&Value, &Value) {
        let found: Vec<_> = self
            .of_kind("Deployment")
            .flat_map(|d| containers(&d["spec"]["template"]["spec"]).map(move |(c, _)| (d, c)))
            .filter(|(_, c)| repository(c["image"].as_str().unwrap_or("")) == image)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: {} Deployments run {image}",
            self.what,
            found.len()
        );
        found[0]
    }

    /// A container's environment with ConfigMap references resolved against this render, the
    /// way the kubelet would: `envFrom` first, then `env`, which overrides it.
    pub fn env(&self, namespace: &str, container: &Value) -> BTreeMap<String, Env> {
        let config_map = |name: &str| {
            self.find("ConfigMap", name, Some(namespace))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: ConfigMap {namespace}/{name} is read but not rendered",
                        self.what
                    )
                })
        };
        let mut env = BTreeMap::new();
        for source in array(&container["envFrom"]) {
            // A Secret's keys are unknown here; nothing we ship takes its environment from one.
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                let prefix = source["prefix"].as_str().unwrap_or("");
                for (key, value) in config_map(name)["data"].as_object().into_iter().flatten() {
                    env.insert(format!("{prefix}{key}"), Env::Literal(text(value)));
                }
            }
        }
        for var in array(&container["env"]) {
            let from = &var["valueFrom"];
            let value = if let Some(key) = from["configMapKeyRef"]["key"].as_str() {
                let name = text(&from["configMapKeyRef"]["name"]);
                let value = config_map(&name)["data"][key].as_str().unwrap_or_else(|| {
                    panic!(
                        "{}: ConfigMap {namespace}/{name} has no key {key}",
                        self.what
                    )
                });
                Env::Literal(value.to_owned())
            } else if !from["secretKeyRef"].is_null() {
                Env::Secret(json!({
                    "name": from["secretKeyRef"]["name"],
                    "key": from["secretKeyRef"]["key"],
                }))
            } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                Env::Field(path.to_owned())
            } else {
                // No value and no source is the empty string.
                Env::Literal(var["value"].as_str().unwrap_or_default().to_owned())
            };
            env.insert(text(&var["name"]), value);
        }
        env
    }
}

/// Where an environment variable's value comes from, once ConfigMaps are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Env {
    Literal(String),
    /// `{name, key}` of a secretKeyRef: the value is only known in the cluster.
    Secret(Value),
    /// A downward-API field path, e.g. `metadata.namespace`.
    Field(String),
}

pub fn kustomize(dir: &str) -> Render {
    Render::new(
        format!("kustomize {dir}"),
        run("kubectl", &["kustomize", dir]),
    )
}

/// The three kustomize entry points README lists.
pub fn kustomize_entry_points() -> Vec<Render> {
    [
        "deploy",
        "deploy/variants/namespaced",
        "deploy/variants/streams",
    ]
    .into_iter()
    .map(kustomize)
    .collect()
}

/// README's "combining variants" overlay, with `namespace: shop` as README suggests.
pub fn readme_overlay() -> Render {
    render_overlay(
        "README overlay: namespaced, streams, shop_orders, namespace shop",
        |deploy| {
            format!(
                "resources: [{deploy}/variants/namespaced]\n\
                 namespace: shop\n\
                 configMapGenerator:\n\
                 \x20 - name: exactly-once-pipeline\n\
                 \x20   behavior: merge\n\
                 \x20   literals: [DELIVERY_MODE=streams, CHANNEL=shop_orders]\n\
                 components: [{deploy}/components/pipeline]\n"
            )
        },
    )
}

/// Renders an overlay as README places one, beside deploy/: `kustomization` is given the path
/// of deploy/ relative to the overlay's temporary directory (kustomize refuses absolute paths)
/// and returns the overlay's kustomization.yaml; `what` names the render in messages.
pub fn render_overlay(what: &str, kustomization: impl FnOnce(&str) -> String) -> Render {
    let dir = tempfile::tempdir().expect("a temporary directory for the overlay");
    let from = dir
        .path()
        .canonicalize()
        .expect("the overlay directory exists");
    let deploy = Path::new(REPO)
        .join("deploy")
        .canonicalize()
        .expect("deploy/ exists");
    let deploy = relative_path(&from, &deploy);
    let overlay = kustomization(&deploy.display().to_string());
    std::fs::write(dir.path().join("kustomization.yaml"), overlay).expect("writing the overlay");
    let path = dir.path().to_str().expect("a UTF-8 temporary path");
    Render::new(
        format!("kustomize <{what}>"),
        run("kubectl", &["kustomize", path]),
    )
}

/// `to` as seen from `from`, both absolute and canonical.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    std::iter::repeat_n(Component::ParentDir, from.len() - common)
        .chain(to[common..].iter().copied())
        .collect()
}

/// `helm template` of the chart into namespace exactly-once, as README installs it.
pub fn helm_template(sets: &[&str]) -> Render {
    let args = helm_args(
        &["template", "exactly-once", CHART, "--namespace", NAMESPACE],
        sets,
    );
    Render::new(
        format!("helm template{}", describe_sets(sets)),
        run("helm", &args),
    )
}

/// What README tells a user to install: the kustomize entry points and the chart's defaults.
pub fn shipped_renders() -> Vec<Render> {
    let mut renders = kustomize_entry_points();
    renders.push(helm_template(&[]));
    renders
}

// ---- reading objects ----

pub fn namespace_of(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
}

pub fn describe(object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    match namespace_of(object) {
        Some(ns) => format!("{} {ns}/{name}", text(&object["kind"])),
        None => format!("{} {name}", text(&object["kind"])),
    }
}

/// A string field, or its JSON when it is not a string (so a message shows what is there).
pub fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

pub fn array(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

pub fn pod_spec(object: &Value) -> Option<&Value> {
    match object["kind"].as_str()? {
        "Pod" => Some(&object["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            object.pointer("/spec/template/spec")
        }
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Every container of a pod, with whether it is an init container.
pub fn containers(pod: &Value) -> impl Iterator<Item = (&Value, bool)> {
    array(&pod["initContainers"])
        .map(|c| (c, true))
        .chain(array(&pod["containers"]).map(|c| (c, false)))
}

/// An image reference without its tag or digest (`host:5000/repo:tag` keeps the port).
pub fn repository(image: &str) -> &str {
    split_image(image).0
}

pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (image, None),
    }
}

/// `[workspace.package] version` of the root Cargo.toml: the release every image belongs to.
pub fn workspace_version() -> String {
    let manifest = std::fs::read_to_string(format!("{REPO}/Cargo.toml")).expect("Cargo.toml");
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "version"
        {
            return value.trim().trim_matches('"').to_owned();
        }
    }
    panic!("Cargo.toml has no [workspace.package] version");
}

pub fn read_yaml(path: &str) -> Value {
    let yaml = std::fs::read_to_string(format!("{REPO}/{path}"))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

#[track_caller]
pub fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}
