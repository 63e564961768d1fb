//! The pipeline bench: for each delivery mode, with three real consumers on a real
//! redis-server, it prints
//! - the reference `redis-benchmark -q -t set -n 200000` rate against the same server;
//! - applied orders per second, with orders injected as fast as Redis takes them through the
//!   order service's own accept script (batched as its group commit does under load, so the
//!   HTTP layer is not what is measured);
//! - Redis commands per order (from INFO commandstats), by command;
//! - p50/p99 from accept to applied at 2,000 orders/s offered through the real order service
//!   over HTTP (accept and apply times are both Redis' clock, millisecond resolution);
//! - the peak RSS (VmHWM) of each consumer;
//! - the cost of TLS: the same throughput workload against a fresh plain server and a fresh
//!   TLS one (consumers and injector over `rediss://`), as a ratio of the plain rate.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p e2e --bench pipeline`

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::fleet::{Fleet, RedisTarget};
use e2e::load::{OrderSpec, orders};
use e2e::net::poll_until;
use e2e::process::cpu_time_of;
use e2e::redis_server::{RedisServer, TlsListener};
use e2e::tls::TestPki;
use protocol::order::{EventId, OrderId, validate_lines};
use protocol::{DeliveryMode, OrderMessage};
use redis::AsyncCommands;
use redis_io::scripts;

const ITEMS: [&str; 5] = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"];
const THROUGHPUT_ORDERS: usize = 100_000;
const REFERENCE_SETS: usize = 200_000;
const LATENCY_RATE: u64 = 2_000;
const LATENCY_SECONDS: u64 = 10;
/// Orders of each side of the TLS comparison, and how many times each side runs.
const TLS_ORDERS: usize = 30_000;
const TLS_ROUNDS: usize = 3;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("# pipeline bench");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model()
    );
    println!(
        "command: cargo build --release --workspace --bins && cargo bench -p e2e --bench pipeline"
    );
    // `cargo bench -p e2e --bench pipeline -- streams` runs one mode only.
    let only: Option<DeliveryMode> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("the argument is a delivery mode"));
    for mode in [DeliveryMode::Pubsub, DeliveryMode::Streams] {
        if only.is_none_or(|m| m == mode) {
            bench_mode(mode).await;
        }
    }
}

async fn bench_mode(mode: DeliveryMode) {
    println!("\n## mode {mode}, 3 consumers, lock TTL 5000 ms, redis-server without persistence");
    let mut fleet = Fleet::start(mode, 3, 5_000).await;
    let redis_cpu = || fleet.redis.process().cpu_time().expect("redis-server runs");
    let reference_cpu_before = redis_cpu();
    let reference = redis_benchmark_set(fleet.redis.port);
    let set_cost = (redis_cpu() - reference_cpu_before).as_secs_f64() / REFERENCE_SETS as f64;
    println!(
        "reference redis-benchmark -q -t set -n {REFERENCE_SETS}: {reference:.0} SET/s, redis-server CPU {:.1} us per SET",
        set_cost * 1e6
    );

    let mut conn = fleet.redis.connection().await;
    let keys = fleet.keys();
    let stock: Vec<(&str, i64)> = ITEMS.iter().map(|i| (*i, 1_000_000_000)).collect();
    let _: () = conn.hset_multiple(keys.inventory(), &stock).await.unwrap();

    // Latency at a moderate offered load, through HTTP, first: after the throughput run the
    // Pub/Sub consumers still work through their backlog of messages for done orders.
    let (p50, p99, n) = latency(&fleet, mode).await;
    println!(
        "latency accept->applied at {LATENCY_RATE} orders/s offered over HTTP for {LATENCY_SECONDS} s ({n} orders): p50 {p50} ms, p99 {p99} ms"
    );

    print_peak_rss(&mut fleet, "after the latency run (steady load)");

    // Throughput.
    let before = commandstats(&mut conn).await;
    let cpu_before = cpu_times(&fleet);
    let specs = orders(&format!("tp-{mode}"), THROUGHPUT_ORDERS, &ITEMS);
    let started = Instant::now();
    let injected_in = inject(&fleet, &specs, mode).await;
    wait_drained(&fleet).await;
    let elapsed = started.elapsed();
    let after = commandstats(&mut conn).await;
    let cpu_after = cpu_times(&fleet);
    let rate = THROUGHPUT_ORDERS as f64 / elapsed.as_secs_f64();
    println!(
        "throughput: {THROUGHPUT_ORDERS} orders applied in {:.2} s = {rate:.0} orders/s ({:.2}x the reference SET rate); injection alone took {:.2} s",
        elapsed.as_secs_f64(),
        rate / reference,
        injected_in.as_secs_f64()
    );
    let per_order = commands_per_order(&before, &after, THROUGHPUT_ORDERS);
    let total: f64 = per_order.values().sum();
    let detail: Vec<String> = per_order
        .iter()
        .filter(|(_, n)| **n >= 0.01)
        .map(|(c, n)| format!("{c} {n:.2}"))
        .collect();
    println!(
        "redis commands per order: {total:.2} (including those run inside scripts): {}",
        detail.join(", ")
    );

    let redis_used = (cpu_after[0].1 - cpu_before[0].1).as_secs_f64();
    println!(
        "redis-server CPU per order: {:.1} us ({:.1}x a reference SET)",
        redis_used / THROUGHPUT_ORDERS as f64 * 1e6,
        redis_used / THROUGHPUT_ORDERS as f64 / set_cost
    );
    let cpu: Vec<String> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|((name, after), (_, before))| {
            let used = after.saturating_sub(*before).as_secs_f64();
            format!(
                "{name} {used:.2} s ({:.0}%)",
                100.0 * used / elapsed.as_secs_f64()
            )
        })
        .collect();
    println!(
        "CPU time during the throughput run (share of its wall time): {}",
        cpu.join(", ")
    );

    let floor = write_floor(&fleet, mode).await;
    println!(
        "floor, the writes alone (no reads, no scripts, pipelined 128 orders at a time): {:.1} us of redis-server CPU per order ({:.1}x a reference SET)",
        floor * 1e6,
        floor / set_cost
    );

    print_peak_rss(&mut fleet, "after the whole run");
    drop(fleet);

    // Both sides alike: three consumers and the injector, no order service, a fresh server
    // each time. Alternated over TLS_ROUNDS, best of each side: one pair of runs on this VM
    // differed by half from noise alone.
    let pki = TestPki::generate();
    let (mut plain_rate, mut plain_cpu) = (0.0_f64, f64::MAX);
    let (mut tls_rate, mut tls_cpu) = (0.0_f64, f64::MAX);
    for round in 0..TLS_ROUNDS {
        let mut plain = Fleet::new(mode, 5_000, false).await;
        for name in ["c0", "c1", "c2"] {
            plain.start_consumer(name, 0).await;
        }
        let (rate, cpu) = throughput(
            &plain,
            &orders(&format!("plain-{mode}-{round}"), TLS_ORDERS, &ITEMS),
        )
        .await;
        (plain_rate, plain_cpu) = (plain_rate.max(rate), plain_cpu.min(cpu));
        drop(plain);
        let tls = tls_fleet(mode, &pki).await;
        let (rate, cpu) = throughput(
            &tls,
            &orders(&format!("tls-{mode}-{round}"), TLS_ORDERS, &ITEMS),
        )
        .await;
        (tls_rate, tls_cpu) = (tls_rate.max(rate), tls_cpu.min(cpu));
    }
    println!(
        "TLS cost, {TLS_ORDERS} orders on a fresh server each, consumers and injector over rediss:// vs redis://, best of {TLS_ROUNDS} alternated runs each: {tls_rate:.0} vs {plain_rate:.0} orders/s ({:.2}x the plain rate); redis-server CPU per order {:.1} vs {:.1} us ({:.2}x)",
        tls_rate / plain_rate,
        tls_cpu * 1e6,
        plain_cpu * 1e6,
        tls_cpu / plain_cpu
    );
}

/// A fleet of 3 consumers on a TLS-only server (no client certificate), verifying it against
/// the test CA as a deployment would.
async fn tls_fleet(mode: DeliveryMode, pki: &TestPki) -> Fleet {
    let redis = RedisServer::start_tls(TlsListener {
        server: pki.server.clone(),
        ca: pki.ca.clone(),
        client: None,
        plain_port: false,
    })
    .await;
    let target = RedisTarget::url(redis.url())
        .with(protocol::env::REDIS_TLS_CA_FILE, pki.ca.to_string_lossy());
    let mut fleet = Fleet::on(redis, mode, 5_000);
    fleet.consumer_redis = Some(target);
    for name in ["c0", "c1", "c2"] {
        fleet.start_consumer(name, 0).await;
    }
    fleet
}

/// Stocks the items, injects `specs` and waits until all are applied: orders per second and
/// redis-server CPU per order.
async fn throughput(fleet: &Fleet, specs: &[OrderSpec]) -> (f64, f64) {
    let mut conn = fleet.redis.connection().await;
    let stock: Vec<(&str, i64)> = ITEMS.iter().map(|i| (*i, 1_000_000_000)).collect();
    let _: () = conn
        .hset_multiple(fleet.keys().inventory(), &stock)
        .await
        .unwrap();
    let cpu_before = fleet.redis.process().cpu_time().expect("redis-server runs");
    let started = Instant::now();
    inject(fleet, specs, fleet.mode).await;
    wait_drained(fleet).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = fleet.redis.process().cpu_time().expect("redis-server runs") - cpu_before;
    (
        specs.len() as f64 / elapsed,
        cpu.as_secs_f64() / specs.len() as f64,
    )
}

/// The redis-server CPU per order of only the writes an order needs in `mode`, as plain
/// pipelined commands on keys of their own: the record (5 fields) and its delivery at accept
/// (`PUBLISH` on a channel nobody hears, or `XADD`), in pubsub mode the pending entry and one
/// lease, then the done marker (3 fields) and its expiry. No reads, no checks, no scripts: a
/// lower bound for any design that keeps these promises.
async fn write_floor(fleet: &Fleet, mode: DeliveryMode) -> f64 {
    const N: usize = 100_000;
    let mut conn = fleet.redis.connection().await;
    let before = fleet.redis.process().cpu_time().expect("redis-server runs");
    for start in (0..N).step_by(128) {
        let mut pipe = redis::pipe();
        for i in start..(start + 128).min(N) {
            let record = format!("floor:{{f}}:order:{i}");
            let message = format!(
                r#"{{"id":"01a21cf0-9843-7089-a3ac-{i:012}","orderId":"floor-{i}","items":[{{"id":"sku-1","quantity":2}}]}}"#
            );
            pipe.hset_multiple(
                &record,
                &[
                    ("id", "01a21cf0-9843-7089-a3ac-fda7b35ed50d"),
                    ("items", r#"[["sku-1",2]]"#),
                    ("message", message.as_str()),
                    ("status", "accepted"),
                    ("acceptedAt", "1795781859397"),
                ],
            )
            .ignore();
            match mode {
                DeliveryMode::Streams => {
                    pipe.xadd("floor:{f}:stream", "*", &[("order", &message)])
                        .ignore();
                }
                DeliveryMode::Pubsub => {
                    pipe.publish("floor:{f}:nobody", &message).ignore();
                    pipe.zadd("floor:{f}:pending", i, i).ignore();
                    pipe.cmd("SET")
                        .arg(format!("floor:{{f}}:lock:{i}"))
                        .arg("0123456789abcdef0123456789abcdef")
                        .arg("NX")
                        .arg("PX")
                        .arg(5_000)
                        .ignore();
                }
            }
            pipe.hset_multiple(
                &record,
                &[
                    ("status", "applied"),
                    ("consumer", "c0"),
                    ("doneAt", "1795781859402"),
                ],
            )
            .ignore()
            .pexpire(&record, 3_600_000)
            .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("the floor writes");
    }
    let used = fleet.redis.process().cpu_time().expect("redis-server runs") - before;
    used.as_secs_f64() / N as f64
}

/// CPU time used so far by redis-server, each consumer and this bench (the injector).
fn cpu_times(fleet: &Fleet) -> Vec<(&'static str, Duration)> {
    let mut out = vec![(
        "redis-server",
        fleet.redis.process().cpu_time().expect("redis-server runs"),
    )];
    for name in ["c0", "c1", "c2"] {
        let process = &fleet.consumers[name].process;
        out.push((name, process.cpu_time().expect("the consumer runs")));
    }
    out.push((
        "injector",
        cpu_time_of("self").expect("our own /proc entry"),
    ));
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn redis_benchmark_set(port: u16) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-q", "-t", "set", "-n", &REFERENCE_SETS.to_string()])
        .args(["-p", &port.to_string()])
        .output()
        .expect("redis-benchmark is installed with redis-tools");
    let text = String::from_utf8_lossy(&out.stdout);
    // "SET: 48123.15 requests per second, p50=0.5 msec" (progress lines end with \r)
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.starts_with("SET:") && l.contains("requests per second"));
    let line = line.unwrap_or_else(|| panic!("unexpected redis-benchmark output: {text}"));
    line["SET:".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a rate")
}

/// Accepts the orders through the order service's accept script, 128 per call as its group
/// commit does under load, on 4 connections.
async fn inject(fleet: &Fleet, specs: &[OrderSpec], mode: DeliveryMode) -> Duration {
    let started = Instant::now();
    let keys = fleet.keys();
    let chunks: Vec<Vec<OrderSpec>> = specs
        .chunks(specs.len().div_ceil(4))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let mut conn = fleet.redis.connection().await;
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            for batch in chunk.chunks(128) {
                let messages: Vec<OrderMessage> = batch
                    .iter()
                    .map(|spec| OrderMessage {
                        id: EventId::new_v7(),
                        order_id: OrderId::parse("orderId", &spec.order_id).unwrap(),
                        items: validate_lines(
                            spec.items.iter().map(|(i, q)| (i.as_str(), *q as u64)),
                        )
                        .unwrap(),
                    })
                    .collect();
                let refs: Vec<&OrderMessage> = messages.iter().collect();
                let _: redis::Value = scripts::accept_invocation(&keys, mode, &refs)
                    .invoke_async(&mut conn)
                    .await
                    .expect("injecting orders");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// Waits until no order is waiting: the pending index (pubsub) or the stream (streams: applied
/// entries are deleted) is empty.
async fn wait_drained(fleet: &Fleet) {
    let keys = fleet.keys();
    let conn = fleet.redis.connection().await;
    poll_until(
        "every order to be applied",
        Duration::from_secs(300),
        Duration::from_millis(20),
        || async {
            let mut conn = conn.clone();
            let pending: usize = match fleet.mode {
                DeliveryMode::Pubsub => conn.zcard(keys.pending()).await?,
                DeliveryMode::Streams => conn.xlen(keys.stream()).await?,
            };
            anyhow::ensure!(pending == 0, "{pending} orders still pending");
            Ok(())
        },
    )
    .await;
}

async fn commandstats(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn commands_per_order(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    n: usize,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(cmd, calls)| {
            (
                cmd.clone(),
                (calls - before.get(cmd).copied().unwrap_or(0)) as f64 / n as f64,
            )
        })
        .collect()
}

/// Offers `LATENCY_RATE` orders/s to the order service for `LATENCY_SECONDS`, then reads each
/// order's accept and done times from its record.
async fn latency(fleet: &Fleet, mode: DeliveryMode) -> (u64, u64, usize) {
    let client = reqwest::Client::new();
    let url = format!("{}/orders", fleet.order_url());
    let total = (LATENCY_RATE * LATENCY_SECONDS) as usize;
    let specs = orders(&format!("lat-{mode}"), total, &ITEMS);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let per_tick = (LATENCY_RATE / 1000) as usize;
    let mut tasks = Vec::with_capacity(total);
    for batch in specs.chunks(per_tick) {
        tick.tick().await;
        for spec in batch {
            let (client, url, body) = (client.clone(), url.clone(), spec.body());
            tasks.push(tokio::spawn(async move {
                let resp = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("POST /orders");
                assert_eq!(resp.status(), 202);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_drained(fleet).await;
    let mut conn = fleet.redis.connection().await;
    let keys = fleet.keys();
    let mut latencies = Vec::with_capacity(total);
    for chunk in specs.chunks(1000) {
        let mut pipe = redis::pipe();
        for spec in chunk {
            pipe.cmd("HMGET")
                .arg(keys.order(&OrderId::parse("orderId", &spec.order_id).unwrap()))
                .arg("acceptedAt")
                .arg("doneAt");
        }
        let times: Vec<(u64, u64)> = pipe.query_async(&mut conn).await.unwrap();
        latencies.extend(times.into_iter().map(|(a, d)| d - a));
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (pct(0.50), pct(0.99), latencies.len())
}

/// VmHWM is the peak so far: printed after the steady-load run and again after the burst.
fn print_peak_rss(fleet: &mut Fleet, when: &str) {
    let mut rss = Vec::new();
    for name in ["c0", "c1", "c2"] {
        let kib = fleet
            .consumer(name)
            .process
            .peak_rss_kib()
            .expect("the consumer is running");
        rss.push(format!("{name} {:.1} MB", kib as f64 / 1024.0));
    }
    println!("consumer peak RSS (VmHWM) {when}: {}", rss.join(", "));
}
