//! How fast the operator turns CRs into Available fleets, and how much memory it takes:
//! time from apply to Deployment created and to status Available, for 1 CR and for 200 CRs
//! created at once, and the operator's peak RSS (VmHWM) with 200 CRs. Ignored by default:
//!
//!   cargo build --release --workspace --bins && \
//!   cargo test --release -p e2e --test operator_bench -- --ignored --nocapture
//!
//! (without `--release` it measures debug builds of the operator.)
//!
//! Each CR has 1 replica, so the control plane (kube-controller-manager, scheduler, KWOK on
//! the same machine) runs 200 pods, not 600; its share of the time is part of the figure.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use e2e::control_plane::fleet::{FleetEnv, REDIS_URL, condition};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::json;

const FLEET: usize = 200;
const DEADLINE: Duration = Duration::from_secs(600);

fn cr(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "exactlyonce.dev/v1alpha1",
        "kind": "ExactlyOnceConsumer",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "redis": {"url": REDIS_URL}},
    }))
    .expect("a valid DynamicObject")
}

/// Names of CRs whose status is Available with all replicas ready and current.
fn available(list: &[DynamicObject]) -> HashSet<String> {
    list.iter()
        .filter_map(|o| {
            let v = serde_json::to_value(o).ok()?;
            let ok = v["status"]["readyReplicas"] == 1
                && v["status"]["observedGeneration"] == v["metadata"]["generation"]
                && condition(&v, "Available").is_some_and(|c| c["status"] == "True");
            ok.then(|| o.metadata.name.clone().unwrap_or_default())
        })
        .collect()
}

/// Creates `names` at once, then polls (every `every`) until each has a Deployment and is
/// Available; returns (time to all Deployments, time to all Available) from the first create.
async fn measure(env: &FleetEnv, names: &[String], every: Duration) -> (Duration, Duration) {
    let crs: Api<DynamicObject> = env.eoc_api();
    let deployments = env.ns.api::<Deployment>();
    let start = Instant::now();
    futures::future::try_join_all(names.iter().map(|n| {
        let crs = crs.clone();
        async move { crs.create(&PostParams::default(), &cr(n)).await }
    }))
    .await
    .expect("creating the CRs");
    let want: HashSet<String> = names.iter().map(|n| format!("{n}-consumer")).collect();
    let mut created = None;
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "not done after {DEADLINE:?}; operator log:\n{}",
            env.operator_log_tails().await
        );
        if created.is_none() {
            let have: HashSet<String> = deployments
                .list(&ListParams::default())
                .await
                .expect("list deployments")
                .items
                .into_iter()
                .filter_map(|d| d.metadata.name)
                .collect();
            if want.is_subset(&have) {
                created = Some(start.elapsed());
            }
        }
        if let Some(created) = created {
            let list = crs
                .list(&ListParams::default())
                .await
                .expect("list CRs")
                .items;
            let done = available(&list);
            if names.iter().all(|n| done.contains(n)) {
                return (created, start.elapsed());
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {:.1} GiB RAM",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_cr_to_available_for_1_and_200_consumers() {
    let env = FleetEnv::start("eoc-bench", &[]).await;
    // The API server sets up a CRD's storage, schema and CEL rules on first use (~2 s here);
    // a dry-run create pays that before the clock starts, so the figure is the operator's.
    env.eoc_api()
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cr("warm-up"),
        )
        .await
        .expect("dry-run create");
    let one = vec!["single".to_owned()];
    let (one_created, one_available) = measure(&env, &one, Duration::from_millis(20)).await;
    let rss_after_one = env.operators[0].process.peak_rss_kib();

    let names: Vec<String> = (0..FLEET).map(|i| format!("fleet-{i:03}")).collect();
    let (many_created, many_available) = measure(&env, &names, Duration::from_millis(250)).await;
    let peak = env.operators[0]
        .process
        .peak_rss_kib()
        .expect("the operator is running");

    let op = &env.operators[0];
    let reconciles = op
        .metric("exactly_once_operator_reconcile_duration_seconds_count")
        .await
        .unwrap_or(0.0);
    let reconcile_secs = op
        .metric("exactly_once_operator_reconcile_duration_seconds_sum")
        .await
        .unwrap_or(0.0);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("operator bench");
    println!("  machine: {}", machine());
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        "--release "
    };
    println!(
        "  command: cargo build {release}--workspace --bins && cargo test {release}-p e2e --test operator_bench -- --ignored --nocapture"
    );
    println!(
        "  control plane: Kubernetes v1.37.2 + KWOK 0.8.0 on 127.0.0.1, 1 fake node, 1 replica per CR"
    );
    println!(
        "  1 CR:    apply -> Deployment {:>8.3} s, apply -> Available {:>8.3} s (poll 20 ms)",
        one_created.as_secs_f64(),
        one_available.as_secs_f64()
    );
    println!(
        "  {FLEET} CRs: apply -> all Deployments {:>8.3} s, apply -> all Available {:>8.3} s (poll 250 ms)",
        many_created.as_secs_f64(),
        many_available.as_secs_f64()
    );
    println!(
        "  operator ({profile} build): {reconciles} reconciles, mean {:.1} ms each",
        1000.0 * reconcile_secs / reconciles.max(1.0)
    );
    println!(
        "  operator peak RSS (VmHWM): {:.1} MiB after 1 CR, {:.1} MiB with {} CRs",
        rss_after_one.unwrap_or(0) as f64 / 1024.0,
        peak as f64 / 1024.0,
        FLEET + 1
    );
}
