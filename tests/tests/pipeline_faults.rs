//! The fault suite: real redis-server, the real order service and real consumer processes.
//! Every scenario places orders through the order service, injects its fault, waits for the
//! fleet to settle, and requires zero lost, duplicated and unexpected orders (see
//! `e2e::checker`). Each scenario runs in both delivery modes.

use std::collections::HashMap;
use std::time::Duration;

use e2e::checker::SETTLE;
use e2e::fleet::Fleet;
use e2e::load::{LoadReport, OrderSpec, orders, place_orders};
use nix::sys::signal::Signal;
use protocol::DeliveryMode;
use protocol::message::STREAM_FIELD;
use redis::AsyncCommands;

const ITEMS: [&str; 5] = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"];
/// Short leases keep takeovers quick; recovery runs every half lease.
const LOCK_TTL_MS: u64 = 1_000;

/// Stocks every item with `units` and returns the initial stock for the checker.
async fn stock(fleet: &Fleet, units: i64) -> HashMap<String, i64> {
    e2e::load::stock(&fleet.order_url(), &ITEMS, units).await
}

async fn place(fleet: &Fleet, specs: Vec<OrderSpec>) -> LoadReport {
    place_orders(&fleet.order_url(), specs, 32, Duration::from_secs(30)).await
}

e2e::both_modes!(
    three_consumers_ten_thousand_orders,
    one_consumer_lagging_50ms_per_order,
    sigkill_of_the_consumer_holding_orders,
    no_consumer_for_the_first_second,
    consumer_stopped_longer_than_the_lock_ttl,
    redis_connections_killed_mid_run,
    redis_restarted_with_aof,
    orders_racing_for_the_last_units,
    malformed_messages_between_good_ones,
    order_refused_every_time_is_dead_lettered_and_its_record_says_so,
);

/// Pub/Sub only (streams reads what it can take): consumers whose intake queue holds 16
/// messages and which take 2 ms per order cannot keep up with the load, so they shed; the shed
/// orders are applied from the pending index all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_burst_beyond_the_intake_capacity() {
    let mut fleet = Fleet::new(DeliveryMode::Pubsub, LOCK_TTL_MS, false).await;
    fleet
        .consumer_env
        .push(("INTAKE_CAPACITY", "16".to_owned()));
    fleet.start_order_service().await;
    for name in ["c0", "c1", "c2"] {
        fleet.start_consumer(name, 2).await;
    }
    let initial = stock(&fleet, 1_000_000).await;
    let report = place(&fleet, orders("burst", 2_000, &ITEMS)).await;
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert_eq!(v.applied, 2_000, "{}", v.summary());
    let shed = fleet.fleet_metric("eo_consumer_messages_shed_total").await;
    assert!(shed > 0.0, "nothing was shed: {}", v.summary());
}

async fn three_consumers_ten_thousand_orders(mode: DeliveryMode) {
    let fleet = Fleet::start(mode, 3, LOCK_TTL_MS).await;
    let initial = stock(&fleet, 1_000_000).await;
    let report = place(&fleet, orders("bulk", 10_000, &ITEMS)).await;
    assert_eq!(report.accepted.len(), 10_000);
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert_eq!(v.applied, 10_000, "{}", v.summary());
}

async fn one_consumer_lagging_50ms_per_order(mode: DeliveryMode) {
    let mut fleet = Fleet::start(mode, 2, LOCK_TTL_MS).await;
    fleet.start_consumer("slow", 50).await;
    let initial = stock(&fleet, 1_000_000).await;
    let report = place(&fleet, orders("lag", 1_000, &ITEMS)).await;
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
}

async fn sigkill_of_the_consumer_holding_orders(mode: DeliveryMode) {
    // Every consumer takes 50 ms per apply, so each always holds orders it has not applied.
    let mut fleet = Fleet::new(mode, LOCK_TTL_MS, false).await;
    fleet.start_order_service().await;
    for name in ["c0", "c1", "c2"] {
        fleet.start_consumer(name, 50).await;
    }
    let initial = stock(&fleet, 1_000_000).await;
    let url = fleet.order_url();
    let load = tokio::spawn(async move {
        place_orders(
            &url,
            orders("kill", 600, &ITEMS),
            8,
            Duration::from_secs(30),
        )
        .await
    });
    // Kill c0 once it has applied something: it is then mid-way through its held orders.
    fleet.wait_applied_by("c0", 5).await;
    fleet.consumer("c0").process.signal(Signal::SIGKILL);
    let report = load.await.expect("the load task");
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    let recovered = fleet
        .fleet_metric("eo_consumer_orders_recovered_total")
        .await;
    assert!(
        recovered > 0.0,
        "the survivors took over nothing from c0: {}",
        v.summary()
    );
}

async fn no_consumer_for_the_first_second(mode: DeliveryMode) {
    let mut fleet = Fleet::new(mode, LOCK_TTL_MS, false).await;
    fleet.start_order_service().await;
    let initial = stock(&fleet, 1_000_000).await;
    let started = std::time::Instant::now();
    let early = place(&fleet, orders("early", 300, &ITEMS)).await;
    // Orders keep coming while the consumers start, a second after the first one.
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    for name in ["c0", "c1", "c2"] {
        fleet.spawn_consumer(name, 0);
    }
    let mut report = place(&fleet, orders("late", 300, &ITEMS)).await;
    report.merge(early);
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert_eq!(v.applied, 600, "{}", v.summary());
}

async fn consumer_stopped_longer_than_the_lock_ttl(mode: DeliveryMode) {
    let mut fleet = Fleet::new(mode, LOCK_TTL_MS, false).await;
    fleet.start_order_service().await;
    // 20 ms per apply: every replica, c0 included, always holds orders it has not applied yet.
    for name in ["c0", "c1", "c2"] {
        fleet.start_consumer(name, 20).await;
    }
    let initial = stock(&fleet, 1_000_000).await;
    let url = fleet.order_url();
    let load = tokio::spawn(async move {
        place_orders(
            &url,
            orders("stop", 600, &ITEMS),
            8,
            Duration::from_secs(30),
        )
        .await
    });
    fleet.wait_applied_by("c0", 3).await;
    fleet.consumer("c0").process.signal(Signal::SIGSTOP);
    // Keep it frozen until the others have taken over orders it held, which can only happen
    // once its leases (or its entries' idle time) ran past the lock TTL.
    e2e::net::wait_until(
        "c1 or c2 to take over c0's orders",
        Duration::from_secs(30),
        || async {
            let recovered = fleet
                .metric("c1", "eo_consumer_orders_recovered_total")
                .await
                + fleet
                    .metric("c2", "eo_consumer_orders_recovered_total")
                    .await;
            anyhow::ensure!(recovered > 0.0, "nothing recovered yet");
            Ok(())
        },
    )
    .await;
    // Resumed, it finishes what it held: those applies must all come back as duplicates.
    fleet.consumer("c0").process.signal(Signal::SIGCONT);
    let report = load.await.expect("the load task");
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
}

async fn redis_connections_killed_mid_run(mode: DeliveryMode) {
    let fleet = Fleet::start(mode, 3, LOCK_TTL_MS).await;
    let initial = stock(&fleet, 1_000_000).await;
    let url = fleet.order_url();
    let load = tokio::spawn(async move {
        place_orders(
            &url,
            orders("kill-conn", 3_000, &ITEMS),
            16,
            Duration::from_secs(30),
        )
        .await
    });
    // Every 100 ms for as long as orders are being placed (up to 3 s).
    let mut rounds_that_killed = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if load.is_finished() {
            break;
        }
        let killed =
            fleet.redis.kill_clients("normal").await + fleet.redis.kill_clients("pubsub").await;
        if killed > 0 {
            rounds_that_killed += 1;
        }
    }
    let report = load.await.expect("the load task");
    assert!(
        rounds_that_killed >= 5,
        "connections were killed in only {rounds_that_killed} rounds while orders were placed"
    );
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
}

async fn redis_restarted_with_aof(mode: DeliveryMode) {
    let mut fleet = Fleet::new(mode, LOCK_TTL_MS, true).await;
    fleet.start_order_service().await;
    for name in ["c0", "c1", "c2"] {
        fleet.start_consumer(name, 0).await;
    }
    let initial = stock(&fleet, 1_000_000).await;
    let url = fleet.order_url();
    let load = tokio::spawn(async move {
        place_orders(
            &url,
            orders("restart", 3_000, &ITEMS),
            16,
            Duration::from_secs(60),
        )
        .await
    });
    e2e::net::wait_until(
        "some orders to be applied",
        Duration::from_secs(30),
        || async {
            let mut applied = 0.0;
            for c in ["c0", "c1", "c2"] {
                applied += fleet.metric(c, "eo_consumer_orders_applied_total").await;
            }
            anyhow::ensure!(applied >= 300.0, "{applied} applied so far");
            Ok(())
        },
    )
    .await;
    fleet.redis.restart().await;
    let report = load.await.expect("the load task");
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert!(
        report.retries > 0,
        "the restart went unnoticed by the client: nothing was tested"
    );
}

async fn orders_racing_for_the_last_units(mode: DeliveryMode) {
    let fleet = Fleet::start(mode, 3, LOCK_TTL_MS).await;
    let initial = stock(&fleet, 10).await;
    // 300 orders of 1 to 3 units compete for 10 units of each item.
    let report = place(&fleet, orders("race", 300, &ITEMS)).await;
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert!(v.rejected > 0 && v.applied > 0, "{}", v.summary());
    let mut conn = fleet.redis.connection().await;
    let stock: HashMap<String, i64> =
        redis::AsyncCommands::hgetall(&mut conn, fleet.keys().inventory())
            .await
            .unwrap();
    // Stock only runs out when no remaining line fits; every item must be nearly sold out.
    for (item, left) in stock {
        assert!(
            (0..3).contains(&left),
            "{item}: {left} left after 300 orders for 10 units"
        );
    }
}

async fn malformed_messages_between_good_ones(mode: DeliveryMode) {
    let mut fleet = Fleet::start(mode, 3, LOCK_TTL_MS).await;
    let initial = stock(&fleet, 1_000_000).await;
    let keys = fleet.keys();
    let bad: [&str; 6] = [
        "not json",
        r#"{"orderId":"x","items":[{"id":"sku-1","quantity":1}]}"#,
        r#"{"id":"bad-1","items":[{"id":"sku-1","quantity":0}]}"#,
        r#"{"id":"bad-2","items":[]}"#,
        r#"{"id":"bad 3","items":[{"id":"sku-1","quantity":1}]}"#,
        r#"{"id":"bad-4","items":[{"id":"sku-1","quantity":"1"}]}"#,
    ];
    let mut conn = fleet.redis.connection().await;
    let mut report = LoadReport::default();
    for (round, chunk) in orders("mixed", 600, &ITEMS).chunks(100).enumerate() {
        for payload in bad {
            fleet.deliver_raw(&mut conn, payload).await;
        }
        let part = place(&fleet, chunk.to_vec()).await;
        assert_eq!(part.accepted.len(), 100, "round {round}");
        report.merge(part);
    }
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    let expected_invalid = (bad.len() * 6) as f64;
    match mode {
        // Every replica hears every message, so each counts every bad one.
        DeliveryMode::Pubsub => {
            e2e::net::wait_until(
                "every replica to count every bad message",
                Duration::from_secs(10),
                || async {
                    for c in ["c0", "c1", "c2"] {
                        let n = fleet.metric(c, "eo_consumer_invalid_messages_total").await;
                        anyhow::ensure!(n == expected_invalid, "{c} counted {n}");
                    }
                    Ok(())
                },
            )
            .await;
        }
        // The checker waited for the good orders only: the bad ones may still be on their way.
        DeliveryMode::Streams => {
            e2e::net::wait_until(
                "every bad entry to be dead-lettered",
                Duration::from_secs(10),
                || async {
                    let dead: usize = conn.clone().xlen(keys.dead_letter()).await?;
                    anyhow::ensure!(dead as f64 == expected_invalid, "{dead} dead-lettered");
                    Ok(())
                },
            )
            .await;
            assert_eq!(
                fleet.fleet_metric("eo_consumer_dead_lettered_total").await,
                expected_invalid
            );
        }
    }
    for c in ["c0", "c1", "c2"] {
        assert!(
            fleet.consumer(c).process.is_running(),
            "{c} died on malformed input"
        );
    }
}

/// An order Redis refuses to apply every time (its item's stock is not a whole number) goes to
/// the dead-letter stream after `MAX_DELIVERIES` refused applies (streams: the entry's
/// deliveries; pubsub: refusals counted fleet-wide), its record says so, it leaves the pending
/// index, and the orders around it are applied.
async fn order_refused_every_time_is_dead_lettered_and_its_record_says_so(mode: DeliveryMode) {
    let mut fleet = Fleet::new(mode, LOCK_TTL_MS, false).await;
    fleet.consumer_env.push(("MAX_DELIVERIES", "2".to_owned()));
    fleet.start_order_service().await;
    for name in ["c0", "c1"] {
        fleet.start_consumer(name, 0).await;
    }
    stock(&fleet, 100).await;
    let mut conn = fleet.redis.connection().await;
    let keys = fleet.keys();
    let _: () = redis::cmd("HSET")
        .arg(keys.inventory())
        .arg("broken")
        .arg("1.5")
        .query_async(&mut conn)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/orders", fleet.order_url());
    for (order_id, item) in [
        ("before", "sku-1"),
        ("poisoned", "broken"),
        ("after", "sku-2"),
    ] {
        let body = serde_json::json!({"orderId": order_id, "items": [{"id": item, "quantity": 1}]});
        let resp = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 202, "{order_id}");
    }
    fleet.wait_order_status("poisoned", "dead-lettered").await;
    let record = fleet.order_record("poisoned").await.unwrap();
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("apply failed after 2 deliveries")
            && reason.contains("item broken is not a whole number"),
        "{record}"
    );
    for order_id in ["before", "after"] {
        assert_eq!(
            fleet.order_record(order_id).await.unwrap()["status"],
            "applied"
        );
    }
    let letters: redis::streams::StreamRangeReply =
        conn.xrange_all(keys.dead_letter()).await.unwrap();
    let [letter] = letters.ids.as_slice() else {
        panic!("one dead letter: {letters:?}")
    };
    let payload: String = letter.get(STREAM_FIELD).unwrap_or_default();
    let parsed = protocol::OrderMessage::parse(payload.as_bytes()).expect("the order's payload");
    assert_eq!(parsed.order_id.as_str(), "poisoned");
    assert_eq!(letter.get::<String>("deliveries").as_deref(), Some("2"));
    let stock: String = conn.hget(keys.inventory(), "broken").await.unwrap();
    assert_eq!(stock, "1.5", "nothing was taken");
    // Nothing is left to re-drive or reclaim, and no count lingers.
    let (pending, live, counts): (i64, i64, i64) = redis::pipe()
        .zcard(keys.pending())
        .xlen(keys.stream())
        .hlen(keys.refusals())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((pending, live, counts), (0, 0, 0));
    assert_eq!(
        fleet.fleet_metric("eo_consumer_dead_lettered_total").await,
        1.0
    );
}
