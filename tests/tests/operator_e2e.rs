//! The operator end to end against a real control plane (tests/k8s): the fleet it builds
//! from a CR, scaling through the CR, drift repair, rollouts, Secret handling, garbage
//! collection and Pod Security. Each test runs its own operator process in its own namespace.
//!
//! Run: `cargo build --workspace --bins && cargo test -p e2e --test operator_e2e`
//! (the first run builds Kubernetes from source: see tests/k8s/README.md).

use anyhow::{anyhow, ensure};
use e2e::control_plane::eventually;
use e2e::control_plane::fleet::{
    FleetEnv as Env, REDIS_URL, TIMEOUT, assert_restricted, condition, env_of,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn a_sample_consumer_becomes_an_available_fleet() {
    let env = Env::start("eoc-sample", &[]).await;
    let name = "orders";
    env.apply_cr(
        name,
        json!({"replicas": 3, "redis": {"url": REDIS_URL}, "lockTtlMs": 7000}),
    )
    .await;
    let cr = env.cr(name).await;
    let uid = cr["metadata"]["uid"].as_str().unwrap().to_owned();
    // Found by its name, not by owner, so the owner-reference check below is not circular.
    let deployments = env.ns.api::<Deployment>();
    let deployment = eventually(&format!("Deployment {name}-consumer"), TIMEOUT, || async {
        Ok(deployments.get(&format!("{name}-consumer")).await?)
    })
    .await;

    // Owner reference: controller, pointing at the CR, so GC deletes the fleet with it.
    let owners = deployment
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.uid == uid && o.kind == "ExactlyOnceConsumer" && o.controller == Some(true)),
        "owner references {owners:?}"
    );
    // Labels: the instance label names the CR, and the selector matches the pod template.
    let labels = deployment.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some(name),
        "{labels:?}"
    );
    let spec = deployment.spec.clone();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .metadata
        .clone()
        .unwrap_or_default()
        .labels
        .unwrap_or_default();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(
            template_labels.get(k),
            Some(v),
            "template lacks selector label {k}"
        );
    }
    // Injected environment: the consumer's contract from the protocol crate.
    let vars = env_of(&deployment);
    assert_eq!(
        vars.get(protocol::env::REDIS_URL)
            .cloned()
            .flatten()
            .as_deref(),
        Some(REDIS_URL)
    );
    assert_eq!(
        vars.get(protocol::env::CHANNEL)
            .cloned()
            .flatten()
            .as_deref(),
        Some("order_updates")
    );
    assert_eq!(
        vars.get(protocol::env::LOCK_TTL_MS)
            .cloned()
            .flatten()
            .as_deref(),
        Some("7000")
    );
    assert_eq!(
        vars.get(protocol::env::DELIVERY_MODE)
            .cloned()
            .flatten()
            .as_deref(),
        Some("pubsub")
    );
    assert!(vars.contains_key(protocol::env::CONSUMER_NAME), "{vars:?}");
    // Security context fit for Pod Security `restricted`.
    assert_restricted(&deployment);

    let status = env.wait_available(name, 3).await["status"].clone();
    assert!(
        !status["selector"].as_str().unwrap_or_default().is_empty(),
        "{status}"
    );
    // The scale subresource reads the same numbers (what HPA/KEDA see).
    let scale = env
        .cp
        .kubectl(&[
            "get",
            "--raw",
            &format!(
                "/apis/exactlyonce.dev/v1alpha1/namespaces/{}/exactlyonceconsumers/{name}/scale",
                env.ns.name
            ),
        ])
        .await
        .expect_success("get scale");
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");
}

#[tokio::test]
async fn kubectl_scale_moves_the_fleet_to_five_to_zero_and_back() {
    let env = Env::start("eoc-scale", &[]).await;
    let name = "scaled";
    env.run_fleet(name, 2).await;
    for replicas in [5, 0, 2] {
        env.scale(name, replicas).await;
        env.wait_deployment_replicas(name, replicas).await;
        env.wait_available(name, replicas).await;
        env.wait_pods(name, replicas as usize).await;
    }
}

#[tokio::test]
async fn hand_edits_to_the_deployment_are_put_back() {
    let env = Env::start("eoc-drift", &[]).await;
    let name = "drift";
    env.run_fleet(name, 2).await;
    let deployment = env.wait_deployment(name).await;
    let dname = deployment.metadata.name.clone().unwrap();

    env.cp
        .kubectl(&[
            "scale",
            "-n",
            &env.ns.name,
            &format!("deployment/{dname}"),
            "--replicas=6",
        ])
        .await
        .expect_success("scale the deployment by hand");
    env.cp
        .kubectl(&[
            "set",
            "env",
            "-n",
            &env.ns.name,
            &format!("deployment/{dname}"),
            &format!("{}=hand-edited", protocol::env::CHANNEL),
        ])
        .await
        .expect_success("set env on the deployment by hand");
    let deployments = env.ns.api::<Deployment>();
    eventually(
        "the operator to put replicas and env back",
        TIMEOUT,
        || async {
            let d = deployments.get(&dname).await?;
            let replicas = d.spec.replicas;
            let channel = env_of(&d).get(protocol::env::CHANNEL).cloned().flatten();
            ensure!(
                replicas == Some(2) && channel.as_deref() == Some("order_updates"),
                "replicas {replicas:?}, CHANNEL {channel:?}"
            );
            Ok(())
        },
    )
    .await;
    env.wait_available(name, 2).await;
}

#[tokio::test]
async fn changing_lock_ttl_or_channel_rolls_out_new_env() {
    let env = Env::start("eoc-rollout", &[]).await;
    let name = "rolling";
    env.run_fleet(name, 2).await;

    for (patch, var, value) in [
        (
            json!({"spec": {"lockTtlMs": 12000}}),
            protocol::env::LOCK_TTL_MS,
            "12000",
        ),
        (
            json!({"spec": {"channel": "orders.eu"}}),
            protocol::env::CHANNEL,
            "orders.eu",
        ),
    ] {
        env.cp
            .kubectl(&[
                "patch",
                "-n",
                &env.ns.name,
                &format!("eoc/{name}"),
                "--type=merge",
                "-p",
                &patch.to_string(),
            ])
            .await
            .expect_success("patch eoc");
        let deployments = env.ns.api::<Deployment>();
        let pods = env.ns.api::<Pod>();
        let dname = env.deployment_name(name).await;
        eventually(
            &format!("a rollout with {var}={value}"),
            TIMEOUT,
            || async {
                let d = deployments.get(&dname).await?;
                let got = env_of(&d).get(var).cloned().flatten();
                ensure!(got.as_deref() == Some(value), "{var} is {got:?}");
                let s = d.status.clone().unwrap_or_default();
                ensure!(
                    s.observed_generation == d.metadata.generation
                        && s.updated_replicas == Some(2)
                        && s.ready_replicas == Some(2)
                        && s.replicas == Some(2),
                    "deployment status {s:?}"
                );
                // Every remaining pod runs the new environment.
                let selector = d.spec.selector.match_labels.clone().unwrap_or_default();
                let selector = selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let listed = pods.list(&ListParams::default().labels(&selector)).await?;
                ensure!(listed.items.len() == 2, "{} pods", listed.items.len());
                for p in &listed.items {
                    let c = &p.spec.as_ref().unwrap().containers[0];
                    let v = c
                        .env
                        .iter()
                        .flatten()
                        .find(|e| e.name == var)
                        .and_then(|e| e.value.clone());
                    ensure!(
                        v.as_deref() == Some(value),
                        "pod {:?} has {var}={v:?}",
                        p.metadata.name
                    );
                }
                Ok(())
            },
        )
        .await;
        env.wait_available(name, 2).await;
    }
}

#[tokio::test]
async fn missing_url_secret_degrades_then_recovers_when_created() {
    let env = Env::start("eoc-secret", &[]).await;
    let name = "secretive";
    env.apply_cr(
        name,
        json!({"replicas": 1, "redis": {"urlSecretRef": {"name": "redis-auth", "key": "url"}}}),
    )
    .await;
    let api = env.eoc_api();
    let degraded = eventually("Degraded=True naming the secret", TIMEOUT, || async {
        let cr = api.get(name).await?;
        let c = condition(&cr.data, "Degraded").ok_or_else(|| anyhow!("no Degraded condition"))?;
        ensure!(c["status"] == "True", "Degraded {c}");
        Ok(c)
    })
    .await;
    let text = format!("{} {}", degraded["reason"], degraded["message"]);
    assert!(
        text.contains("redis-auth"),
        "Degraded does not name the secret: {degraded}"
    );
    let events = env.ns.api::<Event>();
    let warning = eventually("a Warning event on the CR", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await?;
        list.items
            .into_iter()
            .find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.involved_object.kind.as_deref() == Some("ExactlyOnceConsumer")
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .ok_or_else(|| anyhow!("no Warning event yet"))
    })
    .await;
    assert!(
        warning
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("redis-auth"),
        "event does not name the secret: {warning:?}"
    );

    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "redis-auth"},
        "stringData": {"url": "redis://:s3cret@redis:6379/0"}
    }))
    .unwrap();
    env.ns
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the secret");
    env.wait_available(name, 1).await;
    let cr = api.get(name).await.unwrap();
    let c = condition(&cr.data, "Degraded");
    assert!(
        c.as_ref().is_none_or(|c| c["status"] == "False"),
        "still degraded: {c:?}"
    );
    let d = env.wait_deployment(name).await;
    let container = &d.spec.template.spec.unwrap().containers[0];
    let url = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == protocol::env::REDIS_URL)
        .expect("REDIS_URL is set");
    let from = url
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("REDIS_URL comes from the secret, not a copied value");
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        ("redis-auth", "url")
    );
    let mut env = env;
    assert!(
        env.operators[0].process.is_running(),
        "the operator exited; it must recover without a restart"
    );
}

#[tokio::test]
async fn deleting_the_consumer_garbage_collects_its_deployment() {
    let env = Env::start("eoc-delete", &[]).await;
    let name = "doomed";
    env.run_fleet(name, 2).await;
    let dname = env.deployment_name(name).await;
    env.cp
        .kubectl(&[
            "delete",
            "-n",
            &env.ns.name,
            &format!("eoc/{name}"),
            "--wait=false",
        ])
        .await
        .expect_success("delete eoc");
    let deployments = env.ns.api::<Deployment>();
    eventually("GC to remove the deployment", TIMEOUT, || async {
        match deployments.get_opt(&dname).await? {
            None => Ok(()),
            Some(_) => Err(anyhow!("{dname} still exists")),
        }
    })
    .await;
    env.wait_pods(name, 0).await;
}

#[tokio::test]
async fn restricted_namespace_admits_the_fleet() {
    let env = Env::start(
        "eoc-restricted",
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )
    .await;
    let name = "locked-down";
    env.run_fleet(name, 2).await;
    env.wait_pods(name, 2).await;
    let events = env
        .ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let refused: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .map(|e| e.message.clone().unwrap_or_default())
        .collect();
    assert!(refused.is_empty(), "pods were refused: {refused:?}");
}
