//! What `deploy/` ships, checked without a cluster: the kustomize entry points and the Helm
//! chart rendered by our own kubectl and helm (tests/k8s/build.sh's, not whatever is on PATH)
//! and read back as objects. Every failure names the render and the object, so the fix is in
//! `deploy/`; the cluster suites (operator_e2e) then show the same install running.
//!
//! Run: `cargo test -p e2e --test deploy_manifests` (seconds: the tools are cached).

use e2e::manifests::*;
use serde_json::{Value, json};

// ---- 1. the chart's values ----

#[test]
fn chart_lints_clean_with_each_documented_choice() {
    let choices: [&[&str]; 4] = [
        &[],
        &["watchNamespace=shop"],
        &["deliveryMode=streams"],
        &["redis.enabled=false", "redis.url=redis://r:6379"],
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
    for (sets, field) in [
        (&["redis.enabled=false"][..], "redis.url"),
        (
            &["redis.url=redis://r:6379", "redis.existingSecret=s"],
            "existingSecret",
        ),
    ] {
        let args = helm_args(&["template", "eo", CHART], sets);
        let what = format!("helm {}", args.join(" "));
        let refusal = run("helm", &args).expect_failure(&what);
        assert!(
            refusal.contains(field),
            "{what} does not name {field}:\n{refusal}"
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

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let mut problems = Vec::new();
    for render in shipped_renders() {
        for (object, pod) in render.pods() {
            for violation in restricted_violations(pod) {
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
    let same_redis = match env.get("REDIS_URL") {
        Some(Env::Literal(url)) => {
            // The short name resolves only in the Redis Service's own namespace.
            let reachable =
                namespace_of(sample) == Some(namespace) || !url.starts_with("redis://redis:");
            spec["redis"] == json!({ "url": url }) && reachable
        }
        Some(Env::Secret(reference)) => spec["redis"] == json!({ "urlSecretRef": reference }),
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
    ];
    let problems: Vec<_> = cases
        .iter()
        .flat_map(|(render, channel, mode)| pipeline_disagreements(render, channel, mode))
        .collect();
    assert_no_problems("the order service and its fleet disagree", &problems);
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
