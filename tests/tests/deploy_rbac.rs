//! The operator's RBAC as `deploy/` ships it, checked without a cluster: with every kustomize
//! entry point and the chart, it runs as a rendered account, watches where it is meant to, and
//! gets the same least-privilege rules wherever that is.
//!
//! Run: `cargo test -p e2e --test deploy_rbac` (seconds: the tools are cached).

use e2e::manifests::*;
use serde_json::{Value, json};

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
