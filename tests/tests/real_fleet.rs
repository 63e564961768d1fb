//! The fleet for real: a real node (kubelet, containerd, runc, kube-proxy, CoreDNS) runs the
//! images built from this workspace, installed through `deploy/` with kustomize or Helm. The
//! operator runs in-cluster under the ServiceAccount and RBAC that `deploy/` grants; the order
//! service and Redis run as pods; the test reaches them only as a user would, through
//! `kubectl port-forward`. Orders flow while the fleet is scaled, its pods are deleted and one
//! is killed hard, rolled out, and while Redis restarts; the checker then counts lost and
//! duplicated orders, which must be zero.
//!
//! One installation at a time: they share cluster-scoped objects (the CRD, the ClusterRole).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::checker::check;
use e2e::control_plane::install::{Installation, Installer, Scope};
use e2e::control_plane::port_forward::PortForward;
use e2e::control_plane::{ControlPlane, eventually};
use e2e::load::{LoadReport, OrderSpec, orders, place_orders, stock};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use protocol::{DeliveryMode, Keys};
use serde_json::Value;

const ITEMS: [&str; 5] = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"];
/// Enough stock that no order of the run is refused for stock: every one must be applied.
const UNITS: i64 = 1_000_000;
/// A request whose answer is lost (a pod gone, Redis restarting) is retried this long.
const RETRY_FOR: Duration = Duration::from_secs(180);
const SETTLE: Duration = Duration::from_secs(180);
const CONCURRENCY: usize = 16;

/// Installations share cluster-scoped objects; tests take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_pubsub_fleet_applies_every_order_once_through_scaling_and_pod_kills() {
    let _turn = TURN.lock().await;
    fleet_under_churn(Installer::Kustomize, DeliveryMode::Pubsub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_streams_fleet_applies_every_order_once_through_scaling_and_pod_kills() {
    let _turn = TURN.lock().await;
    fleet_under_churn(Installer::Helm, DeliveryMode::Streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_and_redis_restart_under_load_lose_nothing() {
    let _turn = TURN.lock().await;
    let cluster = ControlPlane::shared_real_node().await;
    let install = Installation::install(
        cluster,
        Installer::Kustomize,
        Scope::Cluster,
        DeliveryMode::Streams,
    )
    .await;
    let mut run = Run::start(&install).await;

    // A spec change rolls every consumer pod while orders flow.
    let before = install.consumer_pods("inventory").await;
    let rollout = async {
        install
            .kubectl(&[
                "patch",
                "eoc/inventory",
                "--type=merge",
                "-p",
                r#"{"spec":{"lockTtlMs":4000}}"#,
            ])
            .await
            .expect_success("patch lockTtlMs");
        install.wait_rolled_out("inventory", &before).await;
    };
    let (report, ()) = tokio::join!(run.load("rollout", 3_000), rollout);
    run.report.merge(report);

    // Redis restarts (its pod deleted; the StatefulSet brings it back on the same volume, AOF
    // on) while orders flow: the order service answers 503 meanwhile, the client retries.
    let restart = async {
        let uid = install.pod_uid("redis-0").await;
        install
            .kubectl(&["delete", "pod", "redis-0", "--wait=false"])
            .await
            .expect_success("delete redis-0");
        install.wait_pod_replaced("redis-0", &uid).await;
    };
    let (report, ()) = tokio::join!(run.load("redis-restart", 3_000), restart);
    run.report.merge(report);

    run.verify(&install).await;
    install.uninstall().await;
}

/// 10,000 orders while the fleet goes 3 -> 6 -> 2 replicas, two pods are deleted and one
/// pod's process is SIGKILLed; each fault overlaps its own share of the orders.
async fn fleet_under_churn(installer: Installer, mode: DeliveryMode) {
    let cluster = ControlPlane::shared_real_node().await;
    let install = Installation::install(cluster, installer, Scope::Cluster, mode).await;
    let mut run = Run::start(&install).await;

    let scale_up = async {
        install
            .kubectl(&["scale", "eoc/inventory", "--replicas=6"])
            .await
            .expect_success("scale to 6");
        install.wait_available("inventory", 6).await;
    };
    let (report, ()) = tokio::join!(run.load("scale-up", 2_500), scale_up);
    run.report.merge(report);

    let delete_two = async {
        let pods = install.consumer_pods("inventory").await;
        let victims: Vec<&str> = pods.iter().take(2).map(|p| p.0.as_str()).collect();
        let mut args = vec!["delete", "pod", "--wait=false"];
        args.extend(&victims);
        install
            .kubectl(&args)
            .await
            .expect_success("delete 2 consumer pods");
        install.wait_available("inventory", 6).await;
    };
    let (report, ()) = tokio::join!(run.load("delete-pods", 2_500), delete_two);
    run.report.merge(report);

    let kill_one = async {
        let pods = install.consumer_pods("inventory").await;
        let (name, container) = pods.first().expect("the fleet has pods").clone();
        let restarts = install.restarts(&name).await;
        tokio::task::block_in_place(|| cluster.kill_container(&container));
        install.wait_restarted(&name, restarts).await;
        install.wait_available("inventory", 6).await;
    };
    let (report, ()) = tokio::join!(run.load("kill-one", 2_500), kill_one);
    run.report.merge(report);

    let scale_down = async {
        install
            .kubectl(&["scale", "eoc/inventory", "--replicas=2"])
            .await
            .expect_success("scale to 2");
        install.wait_available("inventory", 2).await;
    };
    let (report, ()) = tokio::join!(run.load("scale-down", 2_500), scale_down);
    run.report.merge(report);

    run.verify(&install).await;
    install.uninstall().await;
}

/// One run of orders against an installation: the order service and Redis reached through
/// port-forwards, every consumer pod that ever existed, and what the client was told.
struct Run {
    orders: PortForward,
    keys: Keys,
    initial: HashMap<String, i64>,
    report: LoadReport,
    pods_seen: Arc<Mutex<HashSet<String>>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Run {
    async fn start(install: &Installation<'_>) -> Self {
        let orders = install.port_forward("svc/order-service", 3001).await;
        let initial = stock(&orders.url(), &ITEMS, UNITS).await;
        // Every consumer pod that ever exists, so an applied order's `consumer` can be checked
        // against pods that really ran.
        let pods_seen = Arc::new(Mutex::new(HashSet::new()));
        let seen = pods_seen.clone();
        let config = watcher::Config::default().labels("app.kubernetes.io/instance=inventory");
        let stream = watcher(install.api::<Pod>(), config).applied_objects();
        let watcher = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(pod) = stream.next().await {
                if let Ok(pod) = pod
                    && let Some(name) = pod.metadata.name
                {
                    seen.lock().expect("not poisoned").insert(name);
                }
            }
        });
        Run {
            orders,
            keys: install.keys(),
            initial,
            report: LoadReport::default(),
            pods_seen,
            watcher,
        }
    }

    /// Places `n` new orders named after `phase` through the order service; the port-forward
    /// must have carried them all (kubectl exits if the order-service pod it bound goes away).
    async fn load(&mut self, phase: &str, n: usize) -> LoadReport {
        let specs: Vec<OrderSpec> = orders(phase, n, &ITEMS);
        let report = place_orders(&self.orders.url(), specs, CONCURRENCY, RETRY_FOR).await;
        assert!(
            self.orders.is_alive(),
            "the port-forward to the order service ended during {phase}:\n{}",
            self.orders.log()
        );
        report
    }

    /// Lost 0, duplicated 0, unexpected 0, oversold 0; every applied order names a consumer
    /// pod that existed, and `GET /orders/{orderId}` says so too.
    async fn verify(&mut self, install: &Installation<'_>) {
        // Opened now: a forward binds one pod, and Redis's may have been replaced.
        let redis = install.port_forward("svc/redis", 6379).await;
        let redis_url = format!("redis://127.0.0.1:{}", redis.local_port());
        let client = redis::Client::open(redis_url.as_str()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis through the port-forward");
        assert!(
            self.report.unknown.is_empty(),
            "orders never answered: {:?}",
            self.report.unknown
        );
        let verdict = check(&mut conn, &self.keys, &self.report, &self.initial, SETTLE).await;
        assert!(
            verdict.is_clean() && verdict.applied == self.report.accepted.len(),
            "{}\n{}",
            verdict.summary(),
            install.diagnostics().await
        );

        let seen = self.pods_seen.lock().expect("not poisoned").clone();
        let http = reqwest::Client::new();
        let ids: Vec<String> = self.report.accepted.keys().cloned().collect();
        let answers: Vec<(String, Value)> = futures::stream::iter(ids)
            .map(|id| {
                let (http, url) = (http.clone(), format!("{}/orders/{id}", self.orders.url()));
                async move {
                    let body: Value = http
                        .get(url)
                        .send()
                        .await
                        .expect("GET /orders/{orderId}")
                        .json()
                        .await
                        .expect("a JSON order status");
                    (id, body)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut by_pod: HashMap<String, usize> = HashMap::new();
        for (id, body) in &answers {
            assert_eq!(body["status"], "applied", "order {id}: {body}");
            let consumer = body["consumer"].as_str().unwrap_or_default();
            assert!(
                seen.contains(consumer),
                "order {id} names consumer {consumer:?}, not a pod that existed: {seen:?}"
            );
            *by_pod.entry(consumer.to_owned()).or_default() += 1;
        }
        eprintln!(
            "{} ({} orders by pod: {by_pod:?})",
            verdict.summary(),
            answers.len()
        );
        self.watcher.abort();
    }
}

/// The operator installed for one namespace (Role, not ClusterRole) runs the fleet there, and
/// the API server refuses it everything elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_operator_runs_its_namespace_and_is_refused_elsewhere() {
    let _turn = TURN.lock().await;
    let cluster = ControlPlane::shared_real_node().await;
    let install = Installation::install(
        cluster,
        Installer::Kustomize,
        Scope::Namespace,
        DeliveryMode::Pubsub,
    )
    .await;
    // It did its job in its own namespace: the sample fleet is Available (install waited).
    // What it was not given is refused by the API server's real RBAC authorizer.
    let other = cluster.namespace("elsewhere", &[]).await;
    let sa = format!(
        "system:serviceaccount:{}:exactly-once-operator",
        install.namespace
    );
    let secret = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"redis-auth"},"stringData":{"url":"redis://redis:6379"}}"#;
    cluster
        .kubectl_with_stdin(&["apply", "-n", &other.name, "-f", "-"], Some(secret))
        .await
        .expect_success("create a Secret elsewhere");
    let refused = cluster
        .kubectl(&[
            "get",
            "secret",
            "redis-auth",
            "-n",
            &other.name,
            "--as",
            &sa,
        ])
        .await
        .expect_failure("read a Secret outside the watched namespace as the operator");
    assert!(
        refused.contains("Forbidden") || refused.contains("forbidden"),
        "{refused}"
    );
    for (verb, resource) in [
        ("list", "exactlyonceconsumers.exactlyonce.dev"),
        ("create", "deployments.apps"),
        ("get", "secrets"),
    ] {
        let answer = cluster
            .kubectl(&[
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                &other.name,
                "--as",
                &sa,
            ])
            .await;
        assert_eq!(
            answer.stdout.trim(),
            "no",
            "{verb} {resource} in {}: {answer:?}",
            other.name
        );
    }
    // And a fleet in the other namespace is left alone.
    let cr = r#"{"apiVersion":"exactlyonce.dev/v1alpha1","kind":"ExactlyOnceConsumer","metadata":{"name":"stray"},"spec":{"replicas":1,"redis":{"url":"redis://redis:6379"}}}"#;
    cluster
        .kubectl_with_stdin(&["apply", "-n", &other.name, "-f", "-"], Some(cr))
        .await
        .expect_success("apply a CR elsewhere");
    // The operator's own fleet reconciles after the stray CR exists: once it has, the stray
    // one would have been seen too if the operator watched there.
    install
        .kubectl(&["scale", "eoc/inventory", "--replicas=2"])
        .await
        .expect_success("scale the watched fleet");
    install.wait_available("inventory", 2).await;
    let deployments = cluster
        .kubectl(&["get", "deployments", "-n", &other.name, "-o", "name"])
        .await
        .expect_success("list deployments elsewhere");
    assert!(
        deployments.trim().is_empty(),
        "the namespaced operator acted outside its namespace: {deployments}"
    );
    eventually(
        "the stray CR has no status",
        Duration::from_secs(1),
        || async {
            let cr = cluster
                .kubectl(&["get", "eoc/stray", "-n", &other.name, "-o", "json"])
                .await
                .expect_success("get eoc/stray");
            let cr: Value = serde_json::from_str(&cr)?;
            anyhow::ensure!(cr["status"].is_null(), "status {}", cr["status"]);
            Ok(())
        },
    )
    .await;
    install.uninstall().await;
}
