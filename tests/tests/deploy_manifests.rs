//! What `deploy/` ships, checked without a cluster: the kustomize entry points and the Helm
//! chart rendered by our own kubectl and helm (tests/k8s/build.sh's, not whatever is on PATH)
//! and read back as objects. Every failure names the render and the object, so the fix is in
//! `deploy/`; the cluster suites (operator_e2e) then show the same install running.
//!
//! Run: `cargo test -p e2e --test deploy_manifests` (seconds: the tools are cached).

use std::collections::BTreeMap;

use e2e::manifests::*;
use protocol::env::{
    TLS_CA_FILE_NAME, TLS_CA_MOUNT_DIR, TLS_CERT_FILE_NAME, TLS_CLIENT_MOUNT_DIR, TLS_KEY_FILE_NAME,
};
use serde_json::{Value, json};

/// README's "Managed Redis" helm flags, mutual TLS included.
const MANAGED_REDIS: [&str; 7] = [
    "redis.enabled=false",
    "redis.url=rediss://my-redis.example.com:6380",
    "redis.credentialsSecret.name=exactly-once-redis-credentials",
    "redis.credentialsSecret.usernameKey=username",
    "redis.tls.enabled=true",
    "redis.tls.caSecret.name=exactly-once-redis-ca",
    "redis.tls.clientCertSecret.name=exactly-once-redis-client",
];

/// What README's "Managed Redis" gives the order service and the sample fleet, with either
/// installer: the Secret names are the kustomize component's.
fn managed_redis_access() -> Value {
    json!({
        "credentials": {
            "name": "exactly-once-redis-credentials",
            "usernameKey": "username",
            "passwordKey": "password",
        },
        "ca": { "name": "exactly-once-redis-ca", "key": "ca.crt" },
        "clientCert": { "name": "exactly-once-redis-client" },
        "insecureSkipVerify": false,
    })
}

/// README's "Managed Redis" overlay, mutual TLS included, written beside deploy/ as README
/// places it (kustomize refuses absolute paths).
fn managed_redis_overlay() -> Render {
    let dir = tempfile::tempdir().expect("a temporary directory for the overlay");
    let from = dir
        .path()
        .canonicalize()
        .expect("the overlay directory exists");
    let deploy = std::path::Path::new(REPO)
        .join("deploy")
        .canonicalize()
        .expect("deploy/ exists");
    let deploy = relative_path(&from, &deploy);
    let deploy = deploy.display();
    let overlay = format!(
        "resources: [{deploy}]\n\
         configMapGenerator:\n\
         \x20 - name: exactly-once-pipeline\n\
         \x20   behavior: merge\n\
         \x20   literals: [REDIS_URL=rediss://my-redis.example.com:6380]\n\
         components:\n\
         \x20 - {deploy}/components/pipeline\n\
         \x20 - {deploy}/components/managed-redis\n\
         \x20 - {deploy}/components/managed-redis-mtls\n"
    );
    std::fs::write(dir.path().join("kustomization.yaml"), overlay).expect("writing the overlay");
    let path = dir.path().to_str().expect("a UTF-8 temporary path");
    Render::new(
        "kustomize <README managed Redis overlay>".to_owned(),
        run("kubectl", &["kustomize", path]),
    )
}

// ---- 1. the chart's values ----

#[test]
fn chart_lints_clean_with_each_documented_choice() {
    let choices: [&[&str]; 5] = [
        &[],
        &["watchNamespace=shop"],
        &["deliveryMode=streams"],
        &["redis.enabled=false", "redis.url=redis://r:6379"],
        &MANAGED_REDIS,
    ];
    for sets in choices {
        for lint in [&["lint", CHART][..], &["lint", "--strict", CHART]] {
            let args = helm_args(lint, sets);
            run("helm", &args).expect_success(&format!("helm {}", args.join(" ")));
        }
    }
}

#[test]
fn chart_refuses_bad_values_naming_the_field() {
    // The schema refuses these, so lint does too.
    for (set, field) in [
        ("deliveryMode=kafka", "deliveryMode"),
        ("channel=order_*", "channel"),
        ("deliveryMod=streams", "deliveryMod"),
        (
            "redis.credentialsSecret.name=Redis_ACL",
            "/redis/credentialsSecret/name",
        ),
        (
            "redis.credentialsSecret.passwordKey=a/b",
            "/redis/credentialsSecret/passwordKey",
        ),
        ("redis.tls.caSecret.key=ca crt", "/redis/tls/caSecret/key"),
        (
            "redis.tls.clientCertSecret.name=-client",
            "/redis/tls/clientCertSecret/name",
        ),
        (
            "redis.tls.insecureSkipVerifyForTestsOnly=maybe",
            "/redis/tls/insecureSkipVerifyForTestsOnly",
        ),
    ] {
        for command in [&["lint", "--strict", CHART][..], &["template", "eo", CHART]] {
            let args = helm_args(command, &[set]);
            let what = format!("helm {}", args.join(" "));
            let output = run("helm", &args);
            let said = format!("{}{}", output.stdout, output.stderr);
            output.expect_failure(&what);
            assert!(
                said.contains(field),
                "{what} does not name {field}:\n{said}"
            );
        }
    }
    // A template `fail` is only a log line in lint mode, so these are refused by template alone.
    // The URLs carry a password, which no refusal may repeat.
    let own_redis = ["redis.enabled=false", "redis.url=rediss://u:s3cret@r:6380"];
    let plain_redis = ["redis.enabled=false", "redis.url=redis://u:s3cret@r:6379"];
    let with = |base: &[&'static str], set: &'static str| [base, &[set]].concat();
    for (sets, field) in [
        (vec!["redis.enabled=false"], "redis.url"),
        (
            vec![
                "redis.url=redis://u:s3cret@r:6379",
                "redis.existingSecret=s",
            ],
            "existingSecret",
        ),
        // TLS to a plain URL, or to the bundled Redis, which has no TLS and no users.
        (with(&plain_redis, "redis.tls.enabled=true"), "redis.url"),
        (vec!["redis.tls.enabled=true"], "redis.tls.enabled"),
        (
            vec!["redis.credentialsSecret.name=acl"],
            "redis.credentialsSecret.name",
        ),
        // TLS settings that TLS off would ignore.
        (
            with(&own_redis, "redis.tls.caSecret.name=ca"),
            "redis.tls.caSecret.name",
        ),
        (
            with(&own_redis, "redis.tls.clientCertSecret.name=client"),
            "redis.tls.clientCertSecret.name",
        ),
        (
            with(&own_redis, "redis.tls.insecureSkipVerifyForTestsOnly=true"),
            "redis.tls.insecureSkipVerifyForTestsOnly",
        ),
        (
            with(&own_redis, "redis.credentialsSecret.usernameKey=user"),
            "redis.credentialsSecret.name",
        ),
        // Skipping verification takes no CA and no client certificate; a URL fragment could
        // skip it behind the setting's back.
        (
            [
                &own_redis[..],
                &[
                    "redis.tls.enabled=true",
                    "redis.tls.insecureSkipVerifyForTestsOnly=true",
                    "redis.tls.clientCertSecret.name=client",
                ],
            ]
            .concat(),
            "redis.tls.insecureSkipVerifyForTestsOnly",
        ),
        (
            vec![
                "redis.enabled=false",
                "redis.url=rediss://u:s3cret@r:6380/#insecure",
            ],
            "redis.url",
        ),
    ] {
        let args = helm_args(&["template", "eo", CHART], &sets);
        let what = format!("helm {}", args.join(" "));
        let refusal = run("helm", &args).expect_failure(&what);
        assert!(
            refusal.contains(field),
            "{what} does not name {field}:\n{refusal}"
        );
        assert!(
            !refusal.contains("s3cret"),
            "{what} shows the password:\n{refusal}"
        );
    }
}

// ---- 2. images and pods ----

#[test]
fn images_are_the_workspace_release() {
    let version = workspace_version();
    let chart = read_yaml(&format!("{CHART}/Chart.yaml"));
    assert_eq!(
        chart["version"],
        version.as_str(),
        "{CHART}/Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"],
        version.as_str(),
        "{CHART}/Chart.yaml appVersion"
    );

    let mut problems = Vec::new();
    for render in shipped_renders() {
        let mut images: Vec<(String, String)> = render
            .pods()
            .into_iter()
            .flat_map(|(object, pod)| containers(pod).map(move |(c, _)| (object, c)))
            .map(|(object, c)| (describe(object), text(&c["image"])))
            .collect();
        // Without spec.image the operator runs its own release's consumer image
        // (operator/src/crd.rs DEFAULT_IMAGE); with one, it must be this release too.
        for eoc in render.of_kind("ExactlyOnceConsumer") {
            if let Some(image) = eoc["spec"]["image"].as_str() {
                images.push((describe(eoc), image.to_owned()));
            }
        }
        for ours in [OPERATOR_IMAGE, ORDER_SERVICE_IMAGE] {
            if !images.iter().any(|(_, image)| repository(image) == ours) {
                problems.push(format!("{}: nothing runs {ours}", render.what));
            }
        }
        for (place, image) in &images {
            let (repo, tag) = split_image(image);
            let pinned = tag.is_some_and(|t| t != "latest") || image.contains('@');
            let ours = [OPERATOR_IMAGE, ORDER_SERVICE_IMAGE, CONSUMER_IMAGE].contains(&repo);
            if !pinned || (ours && tag != Some(version.as_str())) {
                problems.push(format!("{}: {place} runs {image}", render.what));
            }
        }
    }
    let what = format!("images not pinned, or ours not at the workspace version {version}");
    assert_no_problems(&what, &problems);
}

/// What the `restricted` Pod Security Standard would refuse in this pod, plus the settings
/// README promises (a uid, RuntimeDefault, a read-only root filesystem) it only allows.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[key] == true {
            found.push(format!("{key}: true"));
        }
    }
    for volume in array(&pod["volumes"]) {
        let kinds = volume.as_object().into_iter().flat_map(|v| v.keys());
        for kind in kinds.filter(|k| *k != "name") {
            if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                found.push(format!("volume {} is {kind}", text(&volume["name"])));
            }
        }
    }
    for (container, _) in containers(pod) {
        let name = text(&container["name"]);
        let own = &container["securityContext"];
        // A container's setting overrides the pod's.
        let effective = |key: &str| match &own[key] {
            Value::Null => &pod["securityContext"][key],
            set => set,
        };
        let mut check = |ok: bool, rule: &str| {
            if !ok {
                found.push(format!("container {name}: {rule}"));
            }
        };
        check(effective("runAsNonRoot") == true, "runAsNonRoot: true");
        check(
            effective("runAsUser").as_u64().is_some_and(|uid| uid != 0),
            "a non-zero runAsUser",
        );
        check(
            effective("seccompProfile")["type"] == "RuntimeDefault",
            "seccompProfile RuntimeDefault",
        );
        check(
            own["allowPrivilegeEscalation"] == false,
            "allowPrivilegeEscalation: false",
        );
        check(
            own["readOnlyRootFilesystem"] == true,
            "readOnlyRootFilesystem: true",
        );
        check(own["privileged"] != true, "not privileged");
        check(
            array(&own["capabilities"]["drop"]).any(|c| c == "ALL"),
            "capabilities drop ALL",
        );
        check(
            array(&own["capabilities"]["add"]).all(|c| c == "NET_BIND_SERVICE"),
            "adds no capability but NET_BIND_SERVICE",
        );
        check(
            array(&container["ports"]).all(|p| p["hostPort"].as_u64().unwrap_or(0) == 0),
            "no hostPort",
        );
    }
    found
}

/// Secret and ConfigMap files in `pod` that its user could not read. The kubelet writes them as
/// root: a non-root uid reads them through the "other" bits, or through the group bits when an
/// fsGroup gives the files the pod's group.
fn unreadable_files(pod: &Value) -> Vec<String> {
    let fs_group = pod["securityContext"]["fsGroup"].is_u64();
    let mut found = Vec::new();
    for volume in array(&pod["volumes"]) {
        for kind in ["secret", "configMap"] {
            let source = &volume[kind];
            if source.is_null() {
                continue;
            }
            // The API's default mode is 0644.
            let default = source["defaultMode"].as_u64().unwrap_or(0o644);
            let mut modes: Vec<u64> = array(&source["items"])
                .map(|item| item["mode"].as_u64().unwrap_or(default))
                .collect();
            if modes.is_empty() {
                modes.push(default);
            }
            for mode in modes {
                if mode & 0o004 == 0 && !(mode & 0o040 != 0 && fs_group) {
                    found.push(format!(
                        "volume {}: mode {mode:#o} without {}",
                        text(&volume["name"]),
                        if fs_group { "group read" } else { "an fsGroup" }
                    ));
                }
            }
        }
    }
    found
}

/// Every pod template of a render without the trial Redis (`Render::pods` expects it): the
/// operator's and the order service's at least, so an empty render cannot pass.
fn pod_templates(render: &Render) -> Vec<(&Value, &Value)> {
    let pods: Vec<_> = render
        .objects
        .iter()
        .filter_map(|o| Some((o, pod_spec(o)?)))
        .collect();
    assert!(
        pods.len() >= 2,
        "{}: only {} pod templates",
        render.what,
        pods.len()
    );
    pods
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let mut problems = Vec::new();
    let shipped = shipped_renders();
    let managed = [helm_template(&MANAGED_REDIS), managed_redis_overlay()];
    let pods = (shipped.iter().map(|r| (r, r.pods())))
        .chain(managed.iter().map(|r| (r, pod_templates(r))));
    for (render, pods) in pods {
        for (object, pod) in pods {
            let violations = restricted_violations(pod);
            for violation in violations.into_iter().chain(unreadable_files(pod)) {
                problems.push(format!(
                    "{}: {}: {violation}",
                    render.what,
                    describe(object)
                ));
            }
        }
    }
    // The kustomize install creates its namespace, and that namespace enforces the standard.
    for render in kustomize_entry_points() {
        for namespace in render.of_kind("Namespace") {
            let enforce = &namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"];
            if enforce != "restricted" {
                problems.push(format!(
                    "{}: {} enforces {enforce}",
                    render.what,
                    describe(namespace)
                ));
            }
        }
    }
    assert_no_problems("not `restricted`", &problems);
}

#[test]
fn containers_have_probes_and_resource_requests() {
    let mut problems = Vec::new();
    for render in shipped_renders() {
        for (object, pod) in render.pods() {
            for (container, init) in containers(pod) {
                let place = format!(
                    "{}: {} container {}",
                    render.what,
                    describe(object),
                    text(&container["name"])
                );
                let resources = &container["resources"];
                let required = [
                    ("resources.requests.cpu", &resources["requests"]["cpu"]),
                    (
                        "resources.requests.memory",
                        &resources["requests"]["memory"],
                    ),
                    // The memory limit is what Redis's maxmemory is set below.
                    ("resources.limits.memory", &resources["limits"]["memory"]),
                ];
                // An init container runs to completion: it has no probes.
                let probes = [
                    ("readinessProbe", &container["readinessProbe"]),
                    ("livenessProbe", &container["livenessProbe"]),
                ];
                let probes = if init { &probes[..0] } else { &probes[..] };
                for (field, value) in required.iter().chain(probes) {
                    if value.is_null() {
                        problems.push(format!("{place} has no {field}"));
                    }
                }
            }
        }
    }
    assert_no_problems("containers without probes or resources", &problems);
}

// ---- 3. one channel and delivery mode ----

/// Where the order service and the sample fleet of `render` do not both use `channel`, `mode`
/// and one Redis.
fn pipeline_disagreements(render: &Render, channel: &str, mode: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (order, container) = render.deployment_running(ORDER_SERVICE_IMAGE);
    let namespace = namespace_of(order).expect("the order service has a namespace");
    let env = render.env(namespace, container);
    let sample = render.sample();
    let spec = &sample["spec"];
    let literal = |value: &str| Some(Env::Literal(value.to_owned()));
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("{}: {what}", render.what));
        }
    };
    check(
        env.get("CHANNEL") == literal(channel).as_ref() && spec["channel"] == channel,
        format!(
            "channel {channel}: order service {:?}, sample {}",
            env.get("CHANNEL"),
            spec["channel"]
        ),
    );
    check(
        env.get("DELIVERY_MODE") == literal(mode).as_ref() && spec["deliveryMode"] == mode,
        format!(
            "delivery mode {mode}: order service {:?}, sample {}",
            env.get("DELIVERY_MODE"),
            spec["deliveryMode"]
        ),
    );
    let redis = &spec["redis"];
    let same_redis = match env.get("REDIS_URL") {
        Some(Env::Literal(url)) => {
            // The short name resolves only in the Redis Service's own namespace.
            let reachable =
                namespace_of(sample) == Some(namespace) || !url.starts_with("redis://redis:");
            redis["url"] == url.as_str() && redis["urlSecretRef"].is_null() && reachable
        }
        Some(Env::Secret(reference)) => {
            redis["urlSecretRef"] == *reference && redis["url"].is_null()
        }
        _ => false,
    };
    check(
        same_redis,
        format!(
            "Redis: order service {:?}, sample {} in {:?}",
            env.get("REDIS_URL"),
            spec["redis"],
            namespace_of(sample)
        ),
    );
    let pod = &order["spec"]["template"]["spec"];
    match order_service_redis_access(pod, container, &env) {
        Ok(access) => check(
            access == fleet_redis_access(redis),
            format!("Redis credentials and TLS: order service {access}, sample {redis}"),
        ),
        Err(problem) => check(false, format!("order service: {problem}")),
    }
    problems
}

/// The Redis credentials and TLS files the order service uses, in the CRD's terms (see
/// [`fleet_redis_access`]): its environment, resolved through its mounts to Secrets.
fn order_service_redis_access(
    pod: &Value,
    container: &Value,
    env: &BTreeMap<String, Env>,
) -> Result<Value, String> {
    let from_secret = |var: &str| match env.get(var) {
        None => Ok(None),
        Some(Env::Secret(reference)) => Ok(Some(reference.clone())),
        Some(other) => Err(format!("{var} is {other:?}, not a Secret's key")),
    };
    let credentials = match (
        from_secret("REDIS_USERNAME")?,
        from_secret("REDIS_PASSWORD")?,
    ) {
        (None, None) => Value::Null,
        (Some(_), None) => return Err("REDIS_USERNAME without REDIS_PASSWORD".to_owned()),
        (user, Some(password)) => {
            // The CRD names one Secret for both.
            if user.as_ref().is_some_and(|u| u["name"] != password["name"]) {
                return Err("REDIS_USERNAME and REDIS_PASSWORD from two Secrets".to_owned());
            }
            json!({
                "name": password["name"],
                "usernameKey": user.map(|u| u["key"].clone()),
                "passwordKey": password["key"],
            })
        }
    };
    let mounted =
        |var: &str, dir: &str, file: &str| mounted_secret_key(pod, container, env, var, dir, file);
    let ca = mounted("REDIS_TLS_CA_FILE", TLS_CA_MOUNT_DIR, TLS_CA_FILE_NAME)?
        .map(|(name, key)| json!({ "name": name, "key": key }));
    let cert = mounted(
        "REDIS_TLS_CERT_FILE",
        TLS_CLIENT_MOUNT_DIR,
        TLS_CERT_FILE_NAME,
    )?;
    let key = mounted(
        "REDIS_TLS_KEY_FILE",
        TLS_CLIENT_MOUNT_DIR,
        TLS_KEY_FILE_NAME,
    )?;
    // A kubernetes.io/tls Secret, as the CRD's clientCertSecretRef names it: both keys, as is.
    let client_cert = match (cert, key) {
        (None, None) => Value::Null,
        (Some((name, cert)), Some((other, key)))
            if name == other && cert == TLS_CERT_FILE_NAME && key == TLS_KEY_FILE_NAME =>
        {
            json!({ "name": name })
        }
        (cert, key) => return Err(format!("client certificate {cert:?} and key {key:?}")),
    };
    let insecure = env.get("REDIS_TLS_INSECURE_SKIP_VERIFY_FOR_TESTS_ONLY");
    Ok(json!({
        "credentials": credentials,
        "ca": ca,
        "clientCert": client_cert,
        "insecureSkipVerify": insecure == Some(&Env::Literal("true".to_owned())),
    }))
}

/// The Secret and key behind the file that `var` names, which must be `dir/file` on a
/// read-only mount of a Secret volume; `None` when `var` is unset.
fn mounted_secret_key(
    pod: &Value,
    container: &Value,
    env: &BTreeMap<String, Env>,
    var: &str,
    dir: &str,
    file: &str,
) -> Result<Option<(String, String)>, String> {
    let path = match env.get(var) {
        None => return Ok(None),
        Some(Env::Literal(path)) => path,
        Some(other) => return Err(format!("{var} is {other:?}")),
    };
    if *path != format!("{dir}/{file}") {
        return Err(format!("{var} is {path}, not the contract's {dir}/{file}"));
    }
    let mount = array(&container["volumeMounts"])
        .find(|m| m["mountPath"] == dir)
        .ok_or_else(|| format!("{var}: nothing is mounted at {dir}"))?;
    if mount["readOnly"] != true {
        return Err(format!("{dir} is not mounted read-only"));
    }
    let volume = array(&pod["volumes"])
        .find(|v| v["name"] == mount["name"])
        .ok_or_else(|| format!("{dir}: no volume {}", mount["name"]))?;
    let secret = &volume["secret"];
    let name = secret["secretName"]
        .as_str()
        .ok_or_else(|| format!("{dir}: volume {} is not a Secret", volume["name"]))?;
    // Without items every key is a file of its own name.
    let key = match secret["items"].as_array() {
        None => Some(file),
        Some(items) => items
            .iter()
            .find(|item| item["path"] == file)
            .and_then(|item| item["key"].as_str()),
    };
    let key = key.ok_or_else(|| format!("{dir}: Secret {name} has no item {file}"))?;
    Ok(Some((name.to_owned(), key.to_owned())))
}

/// An ExactlyOnceConsumer's `spec.redis` credentials and TLS, with the CRD's defaults filled in.
fn fleet_redis_access(redis: &Value) -> Value {
    let or = |value: &Value, default: &str| value.as_str().unwrap_or(default).to_owned();
    let credentials = &redis["credentialsSecretRef"];
    let tls = &redis["tls"];
    let ca = &tls["caSecretRef"];
    let client_cert = &tls["clientCertSecretRef"];
    json!({
        "credentials": (!credentials.is_null()).then(|| json!({
            "name": credentials["name"],
            "usernameKey": credentials["usernameKey"],
            "passwordKey": or(&credentials["passwordKey"], "password"),
        })),
        "ca": (!ca.is_null()).then(|| json!({ "name": ca["name"], "key": or(&ca["key"], "ca.crt") })),
        "clientCert": (!client_cert.is_null()).then(|| json!({ "name": client_cert["name"] })),
        "insecureSkipVerify": tls["insecureSkipVerifyForTestsOnly"] == true,
    })
}

#[test]
fn order_service_and_sample_fleet_share_one_channel_and_delivery_mode() {
    let [deploy, namespaced, streams] = kustomize_entry_points()
        .try_into()
        .unwrap_or_else(|_| unreachable!("three entry points"));
    let cases = [
        (deploy, "order_updates", "pubsub"),
        (namespaced, "order_updates", "pubsub"),
        (streams, "order_updates", "streams"),
        (readme_overlay(), "shop_orders", "streams"),
        (helm_template(&[]), "order_updates", "pubsub"),
        (
            helm_template(&["deliveryMode=streams"]),
            "order_updates",
            "streams",
        ),
        (
            helm_template(&["channel=shop_orders"]),
            "shop_orders",
            "pubsub",
        ),
        (
            helm_template(&["watchNamespace=shop"]),
            "order_updates",
            "pubsub",
        ),
        (
            helm_template(&["redis.enabled=false", "redis.url=redis://r:6379"]),
            "order_updates",
            "pubsub",
        ),
        (
            helm_template(&["redis.enabled=false", "redis.existingSecret=redis-url"]),
            "order_updates",
            "pubsub",
        ),
        (helm_template(&MANAGED_REDIS), "order_updates", "pubsub"),
        (managed_redis_overlay(), "order_updates", "pubsub"),
    ];
    let problems: Vec<_> = cases
        .iter()
        .flat_map(|(render, channel, mode)| pipeline_disagreements(render, channel, mode))
        .collect();
    assert_no_problems("the order service and its fleet disagree", &problems);
}

#[test]
fn managed_redis_gives_the_order_service_and_the_fleet_the_same_secrets() {
    let sets = |extra: &[&'static str]| [&MANAGED_REDIS[..], extra].concat();
    let mut no_client_cert = managed_redis_access();
    no_client_cert["clientCert"] = Value::Null;
    let cases = [
        (helm_template(&MANAGED_REDIS), managed_redis_access()),
        (managed_redis_overlay(), managed_redis_access()),
        // The fleet in another namespace gets the same Secret names (the README says to create
        // them there too).
        (
            helm_template(&sets(&["watchNamespace=shop"])),
            managed_redis_access(),
        ),
        // A key other than ca.crt is mapped to the file the contract names.
        (
            helm_template(&sets(&["redis.tls.caSecret.key=bundle.pem"])),
            {
                let mut access = managed_redis_access();
                access["ca"]["key"] = json!("bundle.pem");
                access
            },
        ),
        (
            helm_template(&sets(&[
                "redis.tls.caSecret.name=",
                "redis.tls.clientCertSecret.name=",
                "redis.tls.insecureSkipVerifyForTestsOnly=true",
                "redis.credentialsSecret.usernameKey=",
            ])),
            {
                let mut access = no_client_cert.clone();
                access["ca"] = Value::Null;
                access["credentials"]["usernameKey"] = Value::Null;
                access["insecureSkipVerify"] = json!(true);
                access
            },
        ),
        // TLS with the system roots and no credentials: `tls: {}`, nothing mounted.
        (
            helm_template(&[
                "redis.enabled=false",
                "redis.url=rediss://my-redis.example.com:6380",
                "redis.tls.enabled=true",
            ]),
            json!({ "credentials": null, "ca": null, "clientCert": null, "insecureSkipVerify": false }),
        ),
    ];
    let mut problems = Vec::new();
    for (render, expected) in &cases {
        let (order, container) = render.deployment_running(ORDER_SERVICE_IMAGE);
        let namespace = namespace_of(order).expect("the order service has a namespace");
        let env = render.env(namespace, container);
        let pod = &order["spec"]["template"]["spec"];
        match order_service_redis_access(pod, container, &env) {
            Ok(access) if access == *expected => {}
            Ok(access) => problems.push(format!("{}: order service {access}", render.what)),
            Err(problem) => problems.push(format!("{}: order service: {problem}", render.what)),
        }
        let fleet = fleet_redis_access(&render.sample()["spec"]["redis"]);
        if fleet != *expected {
            problems.push(format!("{}: sample {fleet}", render.what));
        }
        // Nothing would talk to a trial Redis.
        if let Some(redis) = render.of_kind("StatefulSet").next() {
            problems.push(format!("{}: still runs {}", render.what, describe(redis)));
        }
    }
    assert_no_problems("not the Redis credentials and TLS asked for", &problems);
}

/// Each managed-Redis value changes the order service's pod template, so `helm upgrade` rolls
/// the pods: they read these settings at start only.
#[test]
fn changing_a_managed_redis_value_rolls_the_order_service() {
    let template = |extra: &[&'static str]| {
        let render = helm_template(&[&MANAGED_REDIS[..], extra].concat());
        let (order, _) = render.deployment_running(ORDER_SERVICE_IMAGE);
        (render.what.clone(), order["spec"]["template"].clone())
    };
    let (_, before) = template(&[]);
    // Skipping verification takes no CA and no client certificate: compared on its own.
    let (_, verified) = template(&[
        "redis.tls.caSecret.name=",
        "redis.tls.clientCertSecret.name=",
    ]);
    let (what, skipped) = template(&[
        "redis.tls.caSecret.name=",
        "redis.tls.clientCertSecret.name=",
        "redis.tls.insecureSkipVerifyForTestsOnly=true",
    ]);
    let mut problems = Vec::new();
    for change in [
        "redis.url=rediss://other.example.com:6380",
        "redis.credentialsSecret.name=other",
        "redis.credentialsSecret.usernameKey=user",
        "redis.credentialsSecret.passwordKey=secret",
        "redis.tls.caSecret.name=other",
        "redis.tls.caSecret.key=bundle.pem",
        "redis.tls.clientCertSecret.name=other",
    ] {
        let (what, after) = template(&[change]);
        if after == before {
            problems.push(what);
        }
    }
    if skipped == verified {
        problems.push(what);
    }
    assert_no_problems("the order service's pod template is unchanged", &problems);
}

// ---- 4. RBAC ----

/// Where the operator is meant to watch.
#[derive(Debug, Clone, PartialEq)]
enum Watch {
    Everywhere,
    Only(String),
}

fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    array(&role["rules"]).any(|rule| {
        array(&rule["apiGroups"]).any(|g| g == group)
            && array(&rule["resources"]).any(|r| r == resource)
            && array(&rule["verbs"]).any(|v| v == verb)
    })
}

/// Rules that are not least privilege, in any Role or ClusterRole of the render.
fn broad_rules(render: &Render) -> Vec<String> {
    let mut found = Vec::new();
    let roles = render.of_kind("Role").chain(render.of_kind("ClusterRole"));
    for role in roles {
        for rule in array(&role["rules"]) {
            let mut check = |ok: bool, what: &str| {
                if !ok {
                    found.push(format!("{}: {what}: {rule}", describe(role)));
                }
            };
            for field in ["apiGroups", "resources", "verbs"] {
                check(array(&rule[field]).all(|v| v != "*"), "a wildcard");
            }
            check(
                array(&rule["verbs"])
                    .all(|v| !["escalate", "bind", "impersonate"].contains(&&*text(v))),
                "a verb that grants more permissions",
            );
            check(rule["nonResourceURLs"].is_null(), "non-resource URLs");
            let secrets = array(&rule["resources"]).any(|r| r == "secrets");
            check(
                !secrets || rule["verbs"] == json!(["get"]),
                "secrets beyond `get`",
            );
        }
    }
    found
}

/// What is wrong with the operator's account, watch and bindings in `render`, and the rules
/// it reconciles with.
fn operator_rbac(render: &Render, expected: &Watch) -> (Vec<String>, Option<Value>) {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("{}: {what}", render.what));
        }
    };
    let (operator, container) = render.deployment_running(OPERATOR_IMAGE);
    let namespace = namespace_of(operator).expect("the operator has a namespace");
    let account = text(&operator["spec"]["template"]["spec"]["serviceAccountName"]);
    check(
        render
            .find("ServiceAccount", &account, Some(namespace))
            .is_some(),
        format!("the operator runs as {account:?}, which is not rendered in {namespace}"),
    );
    let watch = match render.env(namespace, container).get("WATCH_NAMESPACE") {
        None => Watch::Everywhere,
        Some(Env::Literal(ns)) => Watch::Only(ns.clone()),
        Some(Env::Field(path)) if path == "metadata.namespace" => Watch::Only(namespace.to_owned()),
        Some(other) => panic!("{}: WATCH_NAMESPACE from {other:?}", render.what),
    };
    check(
        watch == *expected,
        format!("watches {watch:?}, not {expected:?}"),
    );

    // Every binding binds the operator's account, and only it, to a role that is rendered.
    let subject = json!([{ "kind": "ServiceAccount", "name": account, "namespace": namespace }]);
    let bindings = render
        .of_kind("RoleBinding")
        .chain(render.of_kind("ClusterRoleBinding"));
    let mut granted = Vec::new();
    for binding in bindings {
        check(
            binding["subjects"] == subject,
            format!(
                "{} binds {}, not {subject}",
                describe(binding),
                binding["subjects"]
            ),
        );
        let kind = text(&binding["roleRef"]["kind"]);
        let role_namespace = (kind == "Role").then(|| namespace_of(binding)).flatten();
        match render.find(&kind, &text(&binding["roleRef"]["name"]), role_namespace) {
            Some(role) => granted.push((binding, role)),
            None => check(
                false,
                format!("{} names a role not rendered", describe(binding)),
            ),
        }
    }
    let leases = granted.iter().any(|(binding, role)| {
        namespace_of(binding) == Some(namespace)
            && grants(role, "coordination.k8s.io", "leases", "update")
    });
    check(
        leases,
        format!("no Role lets the operator hold its Lease in {namespace}"),
    );

    let reconcile: Vec<_> = granted
        .iter()
        .filter(|(_, role)| grants(role, "exactlyonce.dev", "exactlyonceconsumers", "watch"))
        .collect();
    let scope = |binding_kind: &str, role_kind: &str, namespace: Option<&str>| {
        matches!(reconcile[..], [(binding, role)]
            if binding["kind"] == binding_kind
                && role["kind"] == role_kind
                && namespace_of(binding) == namespace)
    };
    match expected {
        Watch::Everywhere => check(
            scope("ClusterRoleBinding", "ClusterRole", None),
            format!(
                "the operator's rules are not one ClusterRole: {} bindings",
                reconcile.len()
            ),
        ),
        Watch::Only(watched) => {
            let cluster_wide: Vec<_> = render
                .of_kind("ClusterRole")
                .chain(render.of_kind("ClusterRoleBinding"))
                .map(describe)
                .collect();
            check(
                cluster_wide.is_empty(),
                format!("cluster-wide objects {cluster_wide:?}"),
            );
            check(
                scope("RoleBinding", "Role", Some(watched)),
                format!("the operator's rules are not one Role in {watched}"),
            );
        }
    }
    let rules = reconcile.first().map(|(_, role)| role["rules"].clone());
    problems.extend(
        broad_rules(render)
            .into_iter()
            .map(|p| format!("{}: {p}", render.what)),
    );
    (problems, rules)
}

#[test]
fn operator_rbac_is_least_privilege_for_its_scope() {
    let [deploy, namespaced, streams] = kustomize_entry_points()
        .try_into()
        .unwrap_or_else(|_| unreachable!("three entry points"));
    let cases = [
        (deploy, Watch::Everywhere),
        (streams, Watch::Everywhere),
        (namespaced, Watch::Only(NAMESPACE.to_owned())),
        (readme_overlay(), Watch::Only("shop".to_owned())),
        (helm_template(&[]), Watch::Everywhere),
        (
            helm_template(&["watchNamespace=shop"]),
            Watch::Only("shop".to_owned()),
        ),
    ];
    let mut problems = Vec::new();
    // The rules the operator gets to reconcile, per render: the same wherever it watches.
    let mut operator_rules = Vec::new();
    for (render, expected) in &cases {
        let (found, rules) = operator_rbac(render, expected);
        problems.extend(found);
        operator_rules.extend(rules.map(|rules| (&render.what, rules)));
    }
    if let Some(((first, rules), rest)) = operator_rules.split_first() {
        for (what, other) in rest {
            if other != rules {
                problems.push(format!(
                    "{what} grants the operator other rules than {first}"
                ));
            }
        }
    }
    assert_no_problems("the operator's RBAC", &problems);
}

// ---- 5. the CRD ----

/// Where `actual` differs from `expected`, as JSON pointers. Numbers compare by value: the
/// generated CRD says `maximum: 1000.0`, kustomize prints `1000`, the API server reads the same.
fn differences(expected: &Value, actual: &Value, at: &str, found: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().chain(a.keys().filter(|k| !e.contains_key(*k))) {
                let here = format!("{at}/{key}");
                match (e.get(key), a.get(key)) {
                    (Some(e), Some(a)) => differences(e, a, &here, found),
                    (Some(_), None) => found.push(format!("{here} is missing")),
                    _ => found.push(format!("{here} is extra")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                differences(e, a, &format!("{at}/{i}"), found);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => found.push(format!("{at}: {} became {}", short(e), short(a))),
    }
}

/// A value as JSON, cut to a line.
fn short(value: &Value) -> String {
    let json = value.to_string();
    match json.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &json[..cut]),
        None => json,
    }
}

/// The one CRD of a render, compared with `expected`.
fn crd_differences(render: &Render, expected: &Value) -> Vec<String> {
    let crds: Vec<_> = render.of_kind("CustomResourceDefinition").collect();
    let [crd] = crds[..] else {
        return vec![format!("{}: {} CRDs, not 1", render.what, crds.len())];
    };
    let mut found = Vec::new();
    differences(expected, crd, "", &mut found);
    found
        .iter()
        .map(|d| format!("{}: {d}", render.what))
        .collect()
}

#[test]
fn kustomize_installs_the_generated_crd() {
    let crd = read_yaml(CRD_FILE);
    let mut problems = Vec::new();
    differences(&crd, &read_yaml(CHART_CRD_FILE), "", &mut problems);
    let mut problems: Vec<_> = problems
        .into_iter()
        .map(|d| format!("{CHART_CRD_FILE}: {d}"))
        .collect();
    // README's first step, `kubectl apply -k crds/`, applies the file as it is.
    problems.extend(crd_differences(&kustomize("crds"), &crd));
    // deploy/base labels every object it includes, the CRD too; nothing else may change.
    let mut labelled = crd.clone();
    labelled["metadata"]["labels"] = json!({ "app.kubernetes.io/part-of": "exactly-once" });
    for render in kustomize_entry_points() {
        problems.extend(crd_differences(&render, &labelled));
    }
    let helm = Render::new(
        "helm template --include-crds".to_owned(),
        run("helm", &["template", "eo", CHART, "--include-crds"]),
    );
    problems.extend(crd_differences(&helm, &crd));
    assert_no_problems(&format!("not the CRD of {CRD_FILE}"), &problems);
}
