//! The CRD is an API: these tests pin its shape (structural schema, required fields, defaults,
//! printer columns, scale paths) and run its CEL rules client-side, without an API server.

use super::*;
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = ExactlyOnceConsumer::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref()),
    )
    .expect("schema serializes")
}

fn spec_props() -> Value {
    schema()["properties"]["spec"]["properties"].clone()
}

/// The API server's structural-schema rules, as far as they concern generated schemas: every
/// node has a type (or an int-or-string / preserve-unknown-fields marker), no `$ref`, no
/// `anyOf`/`oneOf` carrying types, and no `null` among enum values.
fn assert_structural(node: &Value, path: &str) {
    let obj = node
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    assert!(!obj.contains_key("$ref"), "{path}: $ref is not allowed");
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = obj.get(key) {
            for b in branches.as_array().expect("array") {
                assert!(
                    b.get("type").is_none(),
                    "{path}.{key}: branches must not set a type"
                );
            }
        }
    }
    let typed = obj.contains_key("type")
        || obj.contains_key("x-kubernetes-int-or-string")
        || obj.contains_key("x-kubernetes-preserve-unknown-fields");
    assert!(typed, "{path}: no type");
    if let Some(values) = obj.get("enum") {
        assert!(
            values
                .as_array()
                .expect("array")
                .iter()
                .all(|v| !v.is_null()),
            "{path}: null in enum"
        );
    }
    if let Some(props) = obj.get("properties") {
        for (name, child) in props.as_object().expect("object") {
            assert_structural(child, &format!("{path}.{name}"));
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(Value::Object(_)) = obj.get("additionalProperties") {
        assert_structural(&obj["additionalProperties"], &format!("{path}{{}}"));
    }
}

#[test]
fn crd_names_scope_and_version() {
    let crd = ExactlyOnceConsumer::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("exactlyonceconsumers.exactlyonce.dev")
    );
    assert_eq!(crd.spec.group, "exactlyonce.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "ExactlyOnceConsumer");
    assert_eq!(crd.spec.names.plural, "exactlyonceconsumers");
    assert_eq!(crd.spec.names.short_names, Some(vec!["eoc".to_owned()]));
    assert_eq!(crd.spec.versions.len(), 1);
    assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    assert!(crd.spec.versions[0].served && crd.spec.versions[0].storage);
}

#[test]
fn schema_is_structural() {
    assert_structural(&schema(), "openAPIV3Schema");
}

#[test]
fn status_and_scale_subresources_point_at_replicas_and_selector() {
    let crd = ExactlyOnceConsumer::crd();
    let sub = crd.spec.versions[0]
        .subresources
        .as_ref()
        .expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn printer_columns_in_order_with_age_last() {
    let crd = ExactlyOnceConsumer::crd();
    let cols = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .expect("columns");
    let got: Vec<(&str, &str, &str)> = cols
        .iter()
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("Replicas", "integer", ".spec.replicas"),
            ("Ready", "integer", ".status.readyReplicas"),
            ("Mode", "string", ".spec.deliveryMode"),
            ("Channel", "string", ".spec.channel"),
            ("Lock TTL", "integer", ".spec.lockTtlMs"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn only_redis_is_required_and_defaults_match_the_protocol() {
    let s = schema();
    assert_eq!(s["required"], json!(["spec"]));
    assert_eq!(s["properties"]["spec"]["required"], json!(["redis"]));
    let p = spec_props();
    assert_eq!(p["replicas"]["default"], json!(3));
    assert_eq!(
        p["channel"]["default"],
        json!(protocol::env::DEFAULT_CHANNEL)
    );
    assert_eq!(
        p["lockTtlMs"]["default"],
        json!(protocol::env::DEFAULT_LOCK_TTL_MS)
    );
    assert_eq!(p["deliveryMode"]["default"], json!("pubsub"));
    assert_eq!(p["deliveryMode"]["enum"], json!(["pubsub", "streams"]));
}

#[test]
fn ranges_and_patterns_are_enforced_by_the_schema() {
    let p = spec_props();
    assert_eq!(
        (
            p["replicas"]["minimum"].as_f64(),
            p["replicas"]["maximum"].as_f64()
        ),
        (Some(0.0), Some(1000.0))
    );
    assert_eq!(
        (
            p["lockTtlMs"]["minimum"].as_f64(),
            p["lockTtlMs"]["maximum"].as_f64()
        ),
        (Some(100.0), Some(3_600_000.0))
    );
    assert_eq!(
        p["redis"]["properties"]["url"]["pattern"],
        json!(r"^rediss?://[^\s#]+$")
    );
    assert_eq!(
        p["imagePullPolicy"]["enum"],
        json!(["Always", "IfNotPresent", "Never"])
    );
    assert_eq!(
        p["redis"]["properties"]["urlSecretRef"]["required"],
        json!(["key", "name"])
    );
}

#[test]
fn channel_pattern_accepts_real_names_and_refuses_globs_and_hash_tags() {
    let pattern = regex::Regex::new(
        spec_props()["channel"]["pattern"]
            .as_str()
            .expect("pattern"),
    )
    .expect("the channel pattern compiles");
    for good in ["order_updates", "orders:eu-west.1", "A"] {
        assert!(pattern.is_match(good), "{good} should be accepted");
    }
    for bad in [
        "",
        "orders*",
        "orders?",
        "{orders}",
        "order updates",
        "-orders",
        "[a]",
    ] {
        assert!(!pattern.is_match(bad), "{bad} should be refused");
    }
}

#[test]
fn redis_url_pattern_takes_redis_and_rediss_only() {
    let url = spec_props()["redis"]["properties"]["url"]["pattern"].clone();
    let pattern = regex::Regex::new(url.as_str().expect("pattern")).expect("compiles");
    for good in ["redis://redis:6379", "rediss://:pw@cache.example:6380/1"] {
        assert!(pattern.is_match(good), "{good} should be accepted");
    }
    for bad in ["http://redis", "redis://", "redis://a b", "redis:6379"] {
        assert!(!pattern.is_match(bad), "{bad} should be refused");
    }
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

#[test]
fn every_spec_field_is_documented_for_kubectl_explain() {
    for (name, prop) in spec_props().as_object().expect("object") {
        let doc = prop["description"].as_str().unwrap_or_default();
        assert!(!doc.trim().is_empty(), "spec.{name} has no description");
    }
}

/// Every property under `node`, at any depth, with its path.
fn all_properties(node: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    for (name, child) in node["properties"].as_object().into_iter().flatten() {
        let child_path = format!("{path}.{name}");
        out.push((child_path.clone(), child.clone()));
        all_properties(child, &child_path, out);
    }
}

#[test]
fn every_redis_field_is_documented_for_kubectl_explain() {
    let mut props = Vec::new();
    all_properties(&spec_props()["redis"], "spec.redis", &mut props);
    assert!(props.len() > 10, "walked too little: {props:?}");
    for (path, prop) in props {
        let doc = prop["description"].as_str().unwrap_or_default();
        assert!(!doc.trim().is_empty(), "{path} has no description");
    }
}

#[test]
fn credentials_and_tls_defaults_and_required_fields() {
    let redis = &spec_props()["redis"]["properties"];
    let credentials = &redis["credentialsSecretRef"];
    assert_eq!(credentials["required"], json!(["name"]));
    assert_eq!(
        credentials["properties"]["passwordKey"]["default"],
        json!("password")
    );
    assert!(credentials["properties"]["usernameKey"]["default"].is_null());
    let tls = &redis["tls"]["properties"];
    assert_eq!(tls["caSecretRef"]["required"], json!(["name"]));
    assert_eq!(
        tls["caSecretRef"]["properties"]["key"]["default"],
        json!("ca.crt")
    );
    assert_eq!(tls["clientCertSecretRef"]["required"], json!(["name"]));
    assert_eq!(
        tls["insecureSkipVerifyForTestsOnly"]["default"],
        json!(false)
    );
    let insecure_doc = tls["insecureSkipVerifyForTestsOnly"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(insecure_doc.starts_with("FOR TESTS ONLY"), "{insecure_doc}");
}

#[test]
fn a_managed_redis_manifest_deserializes_with_defaults() {
    let cr: ExactlyOnceConsumer = serde_json::from_value(json!({
        "apiVersion": "exactlyonce.dev/v1alpha1",
        "kind": "ExactlyOnceConsumer",
        "metadata": {"name": "inventory", "namespace": "shop"},
        "spec": {"redis": {
            "url": "rediss://redis.example:6380",
            "credentialsSecretRef": {"name": "redis-acl"},
            "tls": {"caSecretRef": {"name": "redis-ca"}, "clientCertSecretRef": {"name": "redis-client"}}
        }}
    }))
    .expect("managed Redis manifest parses");
    let redis = cr.spec.redis;
    assert_eq!(
        redis.credentials_secret_ref,
        Some(CredentialsSecretRef {
            name: "redis-acl".to_owned(),
            username_key: None,
            password_key: "password".to_owned(),
        })
    );
    let tls = redis.tls.expect("tls");
    assert_eq!(
        tls.ca_secret_ref,
        Some(CaSecretRef {
            name: "redis-ca".to_owned(),
            key: "ca.crt".to_owned(),
        })
    );
    assert!(!tls.insecure_skip_verify_for_tests_only);
}

#[test]
fn a_minimal_manifest_deserializes_with_defaults() {
    let cr: ExactlyOnceConsumer = serde_json::from_value(json!({
        "apiVersion": "exactlyonce.dev/v1alpha1",
        "kind": "ExactlyOnceConsumer",
        "metadata": {"name": "inventory", "namespace": "shop"},
        "spec": {"redis": {"url": "redis://redis:6379"}}
    }))
    .expect("minimal manifest parses");
    assert_eq!(
        cr.spec,
        ExactlyOnceConsumerSpec::with_redis_url("redis://redis:6379")
    );
    assert_eq!(cr.spec.image_or_default(), DEFAULT_IMAGE);
    assert!(DEFAULT_IMAGE.starts_with("exactlyonce/inventory-consumer:"));
}

#[test]
fn optional_fields_are_omitted_not_null_when_serialized() {
    // A `null` in a server-side apply body would clear a field another manager set.
    let cr = ExactlyOnceConsumer::new("x", ExactlyOnceConsumerSpec::with_redis_url("redis://r"));
    let body = serde_json::to_string(&cr).expect("serializes");
    assert!(!body.contains("null"), "{body}");
}

mod cel {
    use super::*;

    fn cr_with_redis(name: &str, redis: Value) -> ExactlyOnceConsumer {
        serde_json::from_value(json!({
            "apiVersion": "exactlyonce.dev/v1alpha1",
            "kind": "ExactlyOnceConsumer",
            "metadata": {"name": name},
            "spec": {"redis": redis}
        }))
        .expect("parses")
    }

    fn errors(cr: &ExactlyOnceConsumer) -> String {
        match kube::core::cel::validate_cel(cr) {
            Ok(()) => String::new(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn redis_needs_exactly_one_source() {
        let url = cr_with_redis("a", json!({"url": "redis://r:6379"}));
        let secret = cr_with_redis(
            "a",
            json!({"urlSecretRef": {"name": "redis", "key": "url"}}),
        );
        let both = cr_with_redis(
            "a",
            json!({"url": "redis://r", "urlSecretRef": {"name": "redis", "key": "url"}}),
        );
        let neither = cr_with_redis("a", json!({}));
        assert_eq!(errors(&url), "");
        assert_eq!(errors(&secret), "");
        assert!(
            errors(&both).contains("exactly one of url or urlSecretRef"),
            "{}",
            errors(&both)
        );
        assert!(
            errors(&neither).contains("exactly one of url or urlSecretRef"),
            "{}",
            errors(&neither)
        );
    }

    #[test]
    fn tls_needs_an_inline_url_to_be_rediss() {
        let tls_message = "redis.tls requires redis.url to start with rediss://";
        let plain = cr_with_redis("a", json!({"url": "redis://r:6379", "tls": {}}));
        assert!(errors(&plain).contains(tls_message), "{}", errors(&plain));
        let tls = cr_with_redis("a", json!({"url": "rediss://r:6380", "tls": {}}));
        assert_eq!(errors(&tls), "");
        // Without a tls block, either scheme is fine.
        assert_eq!(errors(&cr_with_redis("a", json!({"url": "redis://r"}))), "");
        // A URL in a Secret is invisible to the API server; the operator checks it.
        let secret = cr_with_redis(
            "a",
            json!({"urlSecretRef": {"name": "redis", "key": "url"}, "tls": {}}),
        );
        assert_eq!(errors(&secret), "");
    }

    #[test]
    fn insecure_skip_verify_contradicts_a_ca_and_a_client_certificate() {
        let contradiction =
            "insecureSkipVerifyForTestsOnly excludes caSecretRef and clientCertSecretRef";
        let both = cr_with_redis(
            "a",
            json!({"url": "rediss://r", "tls": {
                "caSecretRef": {"name": "ca"}, "insecureSkipVerifyForTestsOnly": true
            }}),
        );
        assert!(errors(&both).contains(contradiction), "{}", errors(&both));
        let insecure = cr_with_redis(
            "a",
            json!({"url": "rediss://r", "tls": {
                "clientCertSecretRef": {"name": "client"}, "insecureSkipVerifyForTestsOnly": true
            }}),
        );
        assert!(
            errors(&insecure).contains(contradiction),
            "{}",
            errors(&insecure)
        );
        let alone = cr_with_redis(
            "a",
            json!({"url": "rediss://r", "tls": {"insecureSkipVerifyForTestsOnly": true}}),
        );
        assert_eq!(errors(&alone), "");
        let verified = cr_with_redis(
            "a",
            json!({"url": "rediss://r", "tls": {
                "caSecretRef": {"name": "ca"}, "insecureSkipVerifyForTestsOnly": false
            }}),
        );
        assert_eq!(errors(&verified), "");
    }

    #[test]
    fn pod_labels_cannot_take_over_the_selector() {
        let mut cr = cr_with_redis("a", json!({"url": "redis://r"}));
        cr.spec.pod_labels = Some(BTreeMap::from([("team".to_owned(), "shop".to_owned())]));
        assert_eq!(errors(&cr), "");
        cr.spec.pod_labels = Some(BTreeMap::from([(
            "app.kubernetes.io/instance".to_owned(),
            "other".to_owned(),
        )]));
        assert!(
            errors(&cr).contains("podLabels must not set"),
            "{}",
            errors(&cr)
        );
    }

    #[test]
    fn names_longer_than_54_characters_are_refused() {
        assert_eq!(
            errors(&cr_with_redis(&"a".repeat(54), json!({"url": "redis://r"}))),
            ""
        );
        let long = cr_with_redis(&"a".repeat(55), json!({"url": "redis://r"}));
        assert!(
            errors(&long).contains("at most 54 characters"),
            "{}",
            errors(&long)
        );
    }
}
