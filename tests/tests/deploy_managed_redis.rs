//! README's "Managed Redis" install, checked without a cluster: with the helm flags or the
//! kustomize overlay, the order service and the sample fleet get the same credentials and TLS
//! Secrets, and changing a managed-Redis value rolls the order service.
//!
//! Run: `cargo test -p e2e --test deploy_managed_redis` (seconds: the tools are cached).

use e2e::manifests::redis_access::*;
use e2e::manifests::*;
use serde_json::{Value, json};

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
