//! Checks the control plane the operator suites stand on: KWOK makes a plain Deployment's
//! pods Ready, `kubectl scale` works both ways (scale-down really deletes pods), and Pod
//! Security admission enforces `restricted`. If these fail, operator failures mean nothing.

use std::time::Duration;

use anyhow::{anyhow, ensure};
use e2e::control_plane::{ControlPlane, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

const TIMEOUT: Duration = Duration::from_secs(90);

fn deployment_yaml(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: registry.invalid/never-pulled:1
"#
    )
}

async fn wait_ready(ns: &e2e::control_plane::TestNamespace, name: &str, want: i32) {
    let deployments = ns.api::<Deployment>();
    let pods = ns.api::<Pod>();
    eventually(
        &format!("deployment {name} to have {want} ready pods"),
        TIMEOUT,
        || async {
            let d = deployments.get(name).await?;
            let status = d.status.unwrap_or_default();
            let listed = pods
                .list(&ListParams::default().labels(&format!("app={name}")))
                .await?
                .items
                .len();
            ensure!(
                status.ready_replicas.unwrap_or(0) == want
                    && status.replicas.unwrap_or(0) == want
                    && listed == want as usize,
                "ready {:?}, replicas {:?}, pods listed {listed}",
                status.ready_replicas,
                status.replicas
            );
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn kwok_runs_a_deployment_and_kubectl_scales_it_both_ways() {
    let cp = ControlPlane::shared().await;
    let ns = cp.namespace("harness-scale", &[]).await;
    cp.kubectl_with_stdin(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&deployment_yaml("web", 2)),
    )
    .await
    .expect_success("apply deployment");
    wait_ready(&ns, "web", 2).await;

    cp.kubectl(&["scale", "-n", &ns.name, "deployment/web", "--replicas=4"])
        .await
        .expect_success("scale up");
    wait_ready(&ns, "web", 4).await;

    cp.kubectl(&["scale", "-n", &ns.name, "deployment/web", "--replicas=1"])
        .await
        .expect_success("scale down");
    wait_ready(&ns, "web", 1).await;

    // Pods that KWOK runs report Running with a pod IP.
    let pods = ns.api::<Pod>().list(&ListParams::default()).await.unwrap();
    let phase = pods.items[0].status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn restricted_namespace_rejects_a_privileged_pod() {
    let cp = ControlPlane::shared().await;
    let ns = cp
        .namespace(
            "harness-psa",
            &[("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await;
    let privileged = r#"apiVersion: v1
kind: Pod
metadata:
  name: root
spec:
  containers:
  - name: main
    image: registry.invalid/never-pulled:1
    securityContext:
      privileged: true
"#;
    let stderr = cp
        .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(privileged))
        .await
        .expect_failure("apply privileged pod in a restricted namespace");
    assert!(
        stderr.contains("violates PodSecurity \"restricted:latest\"")
            && stderr.contains("privileged"),
        "unexpected rejection: {stderr}"
    );

    let compliant = r#"apiVersion: v1
kind: Pod
metadata:
  name: compliant
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: registry.invalid/never-pulled:1
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"#;
    cp.kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(compliant))
        .await
        .expect_success("apply a restricted-compliant pod");
    let pods = ns.api::<Pod>();
    eventually("the compliant pod to run", TIMEOUT, || async {
        let phase = pods.get("compliant").await?.status.and_then(|s| s.phase);
        if phase.as_deref() == Some("Running") {
            Ok(())
        } else {
            Err(anyhow!("phase {phase:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn our_kubectl_and_the_api_server_are_v1_37_2() {
    let cp = ControlPlane::shared().await;
    let out = cp
        .kubectl(&["version", "-o", "json"])
        .await
        .expect_success("version");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clientVersion"]["gitVersion"], "v1.37.2", "{out}");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.37.2", "{out}");
}
