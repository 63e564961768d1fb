//! The ExactlyOnceConsumer API as the real API server serves it from `crds/`: accepted,
//! documented for `kubectl explain`, printed with its columns, and refusing bad specs with a
//! message that names the field. No operator runs here: this is the CRD alone.
//!
//! Run: `cargo test -p e2e --test operator_crd` (see tests/k8s/README.md).

use anyhow::ensure;
use e2e::control_plane::fleet::{REDIS_URL, TIMEOUT, consumer, install_crd};
use e2e::control_plane::{ControlPlane, eventually};
use serde_json::json;

#[tokio::test]
async fn crd_is_accepted_documented_and_printed() {
    let cp = ControlPlane::shared().await;
    install_crd(cp).await;
    // The API server publishes a new CRD's OpenAPI (what explain reads) a moment after the
    // CRD is served: poll for it as a user retrying would.
    let explain = eventually("kubectl explain eoc.spec", TIMEOUT, || async {
        let out = cp.kubectl(&["explain", "eoc.spec"]).await;
        ensure!(out.success, "{}", out.stderr.trim());
        Ok(out.stdout)
    })
    .await;
    for field in ["replicas", "redis", "channel", "lockTtlMs", "deliveryMode"] {
        assert!(explain.contains(field), "explain lacks {field}:\n{explain}");
    }
    assert!(
        explain.contains("Number of consumer pods"),
        "explain shows no field docs:\n{explain}"
    );
    let explain_url = cp
        .kubectl(&["explain", "eoc.spec.redis.url"])
        .await
        .expect_success("explain eoc.spec.redis.url");
    assert!(explain_url.contains("rediss"), "{explain_url}");

    let ns = cp.namespace("eoc-print", &[]).await;
    cp.kubectl_with_stdin(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&consumer(
            "printed",
            json!({"replicas": 2, "redis": {"url": REDIS_URL}}),
        )),
    )
    .await
    .expect_success("apply a valid CR");
    let table = cp
        .kubectl(&["get", "eoc", "-n", &ns.name])
        .await
        .expect_success("get eoc");
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME", "REPLICAS", "READY", "MODE", "CHANNEL", "LOCK TTL", "AGE",
    ] {
        assert!(header.contains(column), "no {column} column:\n{table}");
    }
    let row = table.lines().nth(1).unwrap_or_default();
    for cell in ["printed", "2", "pubsub", "order_updates", "5000"] {
        assert!(row.contains(cell), "row lacks {cell}:\n{table}");
    }
}

#[tokio::test]
async fn invalid_specs_are_rejected_naming_the_field() {
    let cp = ControlPlane::shared().await;
    install_crd(cp).await;
    let ns = cp.namespace("eoc-invalid", &[]).await;
    let cases = [
        (
            "replicas -1",
            json!({"replicas": -1, "redis": {"url": REDIS_URL}}),
            &["spec.replicas"][..],
        ),
        (
            "lockTtlMs 0",
            json!({"lockTtlMs": 0, "redis": {"url": REDIS_URL}}),
            &["spec.lockTtlMs"][..],
        ),
        (
            "both url and urlSecretRef",
            json!({"redis": {"url": REDIS_URL, "urlSecretRef": {"name": "s", "key": "url"}}}),
            &["spec.redis"][..],
        ),
        (
            "neither url nor urlSecretRef",
            json!({"redis": {}}),
            &["spec.redis"][..],
        ),
        (
            "a URL that is not redis://",
            json!({"redis": {"url": "http://redis:6379"}}),
            &["spec.redis.url"][..],
        ),
        (
            "unknown deliveryMode",
            json!({"deliveryMode": "kafka", "redis": {"url": REDIS_URL}}),
            &["spec.deliveryMode"][..],
        ),
        (
            "tls with a redis:// url",
            json!({"redis": {"url": REDIS_URL, "tls": {}}}),
            &[
                "spec.redis",
                "redis.tls requires redis.url to start with rediss://",
            ][..],
        ),
        (
            "tls with both a CA and insecureSkipVerifyForTestsOnly",
            json!({"redis": {"url": "rediss://redis.example.invalid:6380", "tls": {
                "caSecretRef": {"name": "ca"}, "insecureSkipVerifyForTestsOnly": true
            }}}),
            &[
                "spec.redis.tls",
                "insecureSkipVerifyForTestsOnly excludes caSecretRef and clientCertSecretRef",
            ][..],
        ),
        (
            "credentialsSecretRef without a name",
            json!({"redis": {"url": REDIS_URL, "credentialsSecretRef": {"passwordKey": "pw"}}}),
            &["spec.redis.credentialsSecretRef.name"][..],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, spec, expected)) in cases.iter().enumerate() {
        let manifest = consumer(&format!("bad-{i}"), spec.clone());
        let out = cp
            .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(&manifest))
            .await;
        if out.success {
            failures.push(format!("{what}: accepted ({})", out.stdout.trim()));
        } else if let Some(missing) = expected.iter().find(|e| !out.stderr.contains(*e)) {
            failures.push(format!("{what}: message lacks {missing:?}: {}", out.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let listed = cp
        .kubectl(&["get", "eoc", "-n", &ns.name, "-o", "name"])
        .await
        .expect_success("get eoc");
    assert!(
        listed.trim().is_empty(),
        "invalid CRs were stored: {listed}"
    );
}

#[tokio::test]
async fn managed_redis_spec_is_accepted_with_its_defaults() {
    let cp = ControlPlane::shared().await;
    install_crd(cp).await;
    let ns = cp.namespace("eoc-managed", &[]).await;
    cp.kubectl_with_stdin(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&consumer(
            "managed",
            json!({"redis": {
                "url": "rediss://redis.example.invalid:6380",
                "credentialsSecretRef": {"name": "redis-acl", "usernameKey": "username"},
                "tls": {"caSecretRef": {"name": "redis-ca"}, "clientCertSecretRef": {"name": "redis-client"}}
            }}),
        )),
    )
    .await
    .expect_success("apply a managed-Redis CR");
    let stored = cp
        .kubectl(&["get", "eoc", "managed", "-n", &ns.name, "-o", "json"])
        .await
        .expect_success("get eoc managed");
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("kubectl prints JSON");
    let redis = &stored["spec"]["redis"];
    assert_eq!(
        redis["credentialsSecretRef"],
        json!({"name": "redis-acl", "usernameKey": "username", "passwordKey": "password"})
    );
    assert_eq!(
        redis["tls"],
        json!({
            "caSecretRef": {"name": "redis-ca", "key": "ca.crt"},
            "clientCertSecretRef": {"name": "redis-client"},
            "insecureSkipVerifyForTestsOnly": false
        })
    );
    let explain = cp
        .kubectl(&[
            "explain",
            "eoc.spec.redis.tls.insecureSkipVerifyForTestsOnly",
        ])
        .await
        .expect_success("explain insecureSkipVerifyForTestsOnly");
    assert!(explain.contains("FOR TESTS ONLY"), "{explain}");
}
