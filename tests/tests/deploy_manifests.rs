//! What `deploy/` ships, checked without a cluster: the kustomize entry points and the Helm
//! chart rendered by our own kubectl and helm (tests/k8s/build.sh's, not whatever is on PATH)
//! and read back as objects. Every failure names the render and the object, so the fix is in
//! `deploy/`; the cluster suites (operator_e2e) then show the same install running.
//!
//! Run: `cargo test -p e2e --test deploy_manifests` (seconds: the tools are cached).

use e2e::manifests::pod_security::{restricted_violations, unreadable_files};
use e2e::manifests::redis_access::{
    MANAGED_REDIS, fleet_redis_access, managed_redis_overlay, order_service_redis_access,
};
use e2e::manifests::*;
use serde_json::{Value, json};

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

// ---- 4. the CRD ----

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
