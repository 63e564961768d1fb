//! Driving `ExactlyOnceConsumer` resources for the operator suites: install the CRD, run the
//! operator binary against the cluster, apply CRs as a user would (JSON through kubectl), and
//! wait on what the operator must produce (the Deployment, pods, status, the leader lease).
//! The tests speak JSON rather than the operator's Rust types on purpose: they check the
//! contract a user sees, including specs the Rust types cannot even express.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};

use crate::fleet::sum_metric;
use crate::net::free_port;

use super::{
    ControlPlane, KubectlOutput, OperatorProcess, TestNamespace, eventually, start_operator,
};

/// How long the operator, the controllers and KWOK together get to reach a state.
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// A URL the operator only copies into the pods; nothing connects to it.
pub const REDIS_URL: &str = "redis://redis.example.invalid:6379/0";
/// The operator's default `--lease-name`.
const LEASE_NAME: &str = "exactly-once-operator";
const CRD_NAME: &str = "exactlyonceconsumers.exactlyonce.dev";
const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");

/// The `ExactlyOnceConsumer` API resource, for `Api<DynamicObject>`.
pub fn consumer_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("exactlyonce.dev", "v1alpha1", "ExactlyOnceConsumer"),
        "exactlyonceconsumers",
    )
}

/// A CR manifest (JSON, which kubectl applies like YAML).
pub fn consumer(name: &str, spec: Value) -> String {
    json!({
        "apiVersion": "exactlyonce.dev/v1alpha1",
        "kind": "ExactlyOnceConsumer",
        "metadata": {"name": name},
        "spec": spec,
    })
    .to_string()
}

/// Waits until eoc `name`'s status says the fleet is complete and current: readyReplicas =
/// replicas = `replicas`, Available=True, observedGeneration = generation. Returns the CR.
pub async fn wait_eoc_available(
    api: &Api<DynamicObject>,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> Value {
    eventually(
        &format!("eoc/{name} Available with {replicas}/{replicas} ready"),
        timeout,
        || async {
            let cr = serde_json::to_value(api.get(name).await?)?;
            let status = &cr["status"];
            let available = condition(&cr, "Available");
            ensure!(
                status["replicas"] == replicas
                    && status["readyReplicas"] == replicas
                    && status["observedGeneration"] == cr["metadata"]["generation"]
                    && available.as_ref().is_some_and(|c| c["status"] == "True"),
                "generation {}, status {status}",
                cr["metadata"]["generation"]
            );
            Ok(cr)
        },
    )
    .await
}

/// The `type` condition of an object's status, if any.
pub fn condition(object: &Value, type_: &str) -> Option<Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// Env of the first container: name -> literal value (None when it comes from `valueFrom`).
pub fn env_of(deployment: &Deployment) -> BTreeMap<String, Option<String>> {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

/// Panics unless the pod template satisfies Pod Security `restricted`.
pub fn assert_restricted(deployment: &Deployment) {
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .expect("deployment has a pod template");
    let psc = pod.security_context.clone().unwrap_or_default();
    assert_eq!(
        psc.run_as_non_root,
        Some(true),
        "pod securityContext {psc:?}"
    );
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    for c in &pod.containers {
        let sc = c.security_context.clone().unwrap_or_default();
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{}: {sc:?}",
            c.name
        );
        let drops = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        assert!(
            drops.iter().any(|d| d == "ALL"),
            "{}: drops {drops:?}",
            c.name
        );
        assert_ne!(sc.privileged, Some(true), "{} is privileged", c.name);
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|s| s.type_.as_str())
            .or(pod_seccomp);
        assert!(
            matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
            "{}: seccomp {seccomp:?}",
            c.name
        );
    }
}

/// Applies `crds/` with kubectl (once per test binary) and waits until it is Established.
pub async fn install_crd(cp: &'static ControlPlane) {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = tokio::task::spawn_blocking(move || {
        INSTALLED
            .get_or_init(|| {
                let run = |args: &[&str]| {
                    let out = std::process::Command::new(cp.kubectl_path())
                        .args(args)
                        .env("KUBECONFIG", cp.kubeconfig())
                        .env("KUBECACHEDIR", cp.dir().join("kube-cache"))
                        .output()
                        .map_err(|e| format!("kubectl: {e}"))?;
                    if out.status.success() {
                        Ok(())
                    } else {
                        Err(format!(
                            "kubectl {} failed: {}",
                            args.join(" "),
                            String::from_utf8_lossy(&out.stderr)
                        ))
                    }
                };
                run(&["apply", "-f", CRD_DIR])?;
                run(&[
                    "wait",
                    "--for=condition=Established",
                    &format!("crd/{CRD_NAME}"),
                    "--timeout=60s",
                ])?;
                // Established comes before discovery lists the new type; until it does,
                // kubectl answers `the server doesn't have a resource type "eoc"`.
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                loop {
                    match run(&["get", "eoc", "--all-namespaces", "-o", "name"]) {
                        Ok(()) => return Ok(()),
                        Err(e) if std::time::Instant::now() >= deadline => {
                            return Err(format!("eoc never appeared in discovery: {e}"));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            })
            .clone()
    })
    .await
    .expect("installing the CRD does not panic");
    if let Err(reason) = result {
        panic!("installing the CRD from {CRD_DIR}: {reason}");
    }
}

/// How a test runs the operator. Flags come from the operator's `--help`.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    pub identity: String,
    pub lease_namespace: String,
    pub watch_namespace: Option<String>,
}

/// One operator replica started by a test, with its HTTP port (healthz, readyz, metrics).
pub struct RunningOperator {
    pub process: OperatorProcess,
    pub identity: String,
    pub http_port: u16,
    http: reqwest::Client,
}

impl RunningOperator {
    pub fn start(cp: &ControlPlane, binary: &Path, options: &OperatorOptions) -> Self {
        let http_port = free_port();
        let http_addr = format!("127.0.0.1:{http_port}");
        let mut args: Vec<String> = vec![
            "--http-addr".into(),
            http_addr,
            "--leader-election-namespace".into(),
            options.lease_namespace.clone(),
            "--identity".into(),
            options.identity.clone(),
        ];
        if let Some(ns) = &options.watch_namespace {
            args.extend(["--namespace".into(), ns.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = start_operator(cp, binary, &args, &[("RUST_LOG", "info")]);
        Self {
            process,
            identity: options.identity.clone(),
            http_port,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.http_port);
        let response = self.http.get(&url).send().await?;
        let code = response.status().as_u16();
        Ok((code, response.text().await?))
    }

    /// The sum of `exactly_once_operator_reconciles_total` over outcomes.
    pub async fn reconciles(&self) -> u64 {
        let (_, body) = self
            .get("/metrics")
            .await
            .unwrap_or_else(|e| panic!("GET /metrics of {}: {e}", self.identity));
        sum_metric(&body, "exactly_once_operator_reconciles_total") as u64
    }

    /// Metric `name` summed over its label sets (e.g.
    /// `exactly_once_operator_reconcile_duration_seconds_sum`); None when /metrics fails.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await.ok()?;
        Some(sum_metric(&body, name))
    }

    /// Whether `/readyz` answers 200 (the operator says it is ready, e.g. as leader).
    pub async fn ready(&self) -> anyhow::Result<String> {
        let (code, body) = self.get("/readyz").await?;
        ensure!(code == 200, "/readyz {code}: {body}");
        Ok(body)
    }

    /// Ok once `/readyz` says this replica is a standby: an election round found the lease
    /// held by another live replica.
    pub async fn standby(&self) -> anyhow::Result<()> {
        let (code, body) = self.get("/readyz").await?;
        ensure!(
            code == 503 && body.trim() == "standby",
            "/readyz {code}: {body}"
        );
        Ok(())
    }
}

/// A test's world: the shared cluster, its own namespace with the CRD installed, and the
/// operator replicas it started (killed when this is dropped).
pub struct FleetEnv {
    pub cp: &'static ControlPlane,
    pub ns: TestNamespace,
    pub operators: Vec<RunningOperator>,
    binary: PathBuf,
}

impl FleetEnv {
    /// Namespace `prefix-*` with `labels`, the CRD, and one operator replica watching it.
    pub async fn start(prefix: &str, labels: &[(&str, &str)]) -> Self {
        let cp = ControlPlane::shared().await;
        install_crd(cp).await;
        let ns = cp.namespace(prefix, labels).await;
        let binary = crate::bins::workspace_binary("exactly-once-operator");
        let mut env = Self {
            cp,
            ns,
            operators: Vec::new(),
            binary,
        };
        env.add_operator().await;
        let first = &env.operators[0];
        eventually(
            &format!("{} to become leader (/readyz 200)", first.identity),
            TIMEOUT,
            || async { first.ready().await },
        )
        .await;
        env
    }

    fn options(&self, identity: String) -> OperatorOptions {
        OperatorOptions {
            identity,
            lease_namespace: self.ns.name.clone(),
            watch_namespace: Some(self.ns.name.clone()),
        }
    }

    /// Starts one more operator replica and waits for its HTTP endpoint.
    pub async fn add_operator(&mut self) -> &RunningOperator {
        let identity = format!("operator-{}", self.operators.len());
        let op = RunningOperator::start(self.cp, &self.binary, &self.options(identity));
        let pid = op.process.pid();
        let log = op.process.log_path().to_path_buf();
        eventually(
            &format!(
                "operator {} (pid {pid}, log {}) to serve /healthz",
                op.identity,
                log.display()
            ),
            Duration::from_secs(30),
            || async { op.get("/healthz").await.map(|_| ()) },
        )
        .await;
        self.operators.push(op);
        self.operators.last().expect("just pushed")
    }

    pub fn eoc_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.ns.client.clone(), &self.ns.name, &consumer_resource())
    }

    pub async fn apply(&self, manifest: &str) -> KubectlOutput {
        self.cp
            .kubectl_with_stdin(&["apply", "-n", &self.ns.name, "-f", "-"], Some(manifest))
            .await
    }

    /// `kubectl apply` of a CR that must be accepted.
    pub async fn apply_cr(&self, name: &str, spec: Value) {
        self.apply(&consumer(name, spec))
            .await
            .expect_success(&format!("apply eoc/{name}"));
    }

    /// Applies CR `name` with `replicas` and [`REDIS_URL`], and waits until it is Available.
    pub async fn run_fleet(&self, name: &str, replicas: i32) {
        self.apply_cr(
            name,
            json!({"replicas": replicas, "redis": {"url": REDIS_URL}}),
        )
        .await;
        self.wait_available(name, replicas).await;
    }

    /// `kubectl scale eoc/NAME --replicas=N`: the scale subresource, as HPA or a user drives it.
    pub async fn scale(&self, name: &str, replicas: i32) {
        self.cp
            .kubectl(&[
                "scale",
                "-n",
                &self.ns.name,
                &format!("eoc/{name}"),
                &format!("--replicas={replicas}"),
            ])
            .await
            .expect_success(&format!("scale eoc/{name} to {replicas}"));
    }

    pub async fn cr(&self, name: &str) -> Value {
        let obj = self
            .eoc_api()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get eoc/{name}: {e}"));
        serde_json::to_value(obj).expect("a DynamicObject serializes")
    }

    /// The Deployment controlled by CR `name`, once it exists.
    pub async fn wait_deployment(&self, name: &str) -> Deployment {
        let uid = self.cr(name).await["metadata"]["uid"]
            .as_str()
            .expect("a stored CR has a uid")
            .to_owned();
        let deployments = self.ns.api::<Deployment>();
        eventually(
            &format!("a Deployment owned by eoc/{name}"),
            TIMEOUT,
            || async {
                deployments
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .find(|d| {
                        d.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.uid == uid && o.controller == Some(true))
                    })
                    .ok_or_else(|| anyhow!("none yet"))
            },
        )
        .await
    }

    pub async fn deployment_name(&self, name: &str) -> String {
        self.wait_deployment(name)
            .await
            .metadata
            .name
            .expect("a stored Deployment has a name")
    }

    pub async fn wait_deployment_replicas(&self, name: &str, replicas: i32) {
        let dname = self.deployment_name(name).await;
        let deployments = self.ns.api::<Deployment>();
        eventually(
            &format!("deployment {dname} spec.replicas={replicas}"),
            TIMEOUT,
            || async {
                let got = deployments.get(&dname).await?.spec.replicas;
                ensure!(got == Some(replicas), "spec.replicas {got:?}");
                Ok(())
            },
        )
        .await;
    }

    /// Status says the fleet is complete and current (see [`wait_eoc_available`]).
    pub async fn wait_available(&self, name: &str, replicas: i32) -> Value {
        wait_eoc_available(&self.eoc_api(), name, replicas, TIMEOUT).await
    }

    /// Exactly `count` pods of the fleet exist (terminating ones count until they are gone).
    pub async fn wait_pods(&self, name: &str, count: usize) {
        let pods = self.ns.api::<Pod>();
        let selector = format!("app.kubernetes.io/instance={name}");
        eventually(&format!("{count} pods of eoc/{name}"), TIMEOUT, || async {
            let listed = pods.list(&ListParams::default().labels(&selector)).await?;
            ensure!(listed.items.len() == count, "{} pods", listed.items.len());
            Ok(())
        })
        .await;
    }

    /// Holder of the operator's leader Lease (default name) in the test namespace.
    pub async fn leader(&self) -> anyhow::Result<String> {
        let lease = self.ns.api::<Lease>().get(LEASE_NAME).await?;
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
            .context("the Lease has no holder")
    }

    /// Waits until `identity` holds the operator's leader Lease.
    pub async fn wait_leader(&self, identity: &str) {
        eventually(
            &format!("{identity} to hold the lease"),
            TIMEOUT,
            || async {
                let holder = self.leader().await?;
                ensure!(holder == identity, "holder {holder}");
                Ok(())
            },
        )
        .await;
    }

    pub async fn operator_log_tails(&self) -> String {
        self.operators
            .iter()
            .map(|o| format!("--- {} ---\n{}", o.identity, o.process.log_tail(30)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
