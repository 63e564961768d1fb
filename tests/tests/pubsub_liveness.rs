//! Pub/Sub liveness against a real redis-server and real processes: a subscription whose
//! connection goes half-open is noticed and replaced, and a re-drive gets past a pending index
//! where more orders than a page share one score.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::accept::accept_batch;
use e2e::fleet::Fleet;
use e2e::load::{LoadReport, orders, place_orders};
use e2e::net::wait_until;
use e2e::stall_proxy::StallProxy;
use protocol::order::{EventId, OrderId, validate_lines};
use protocol::record::field;
use protocol::{DeliveryMode, Keys, OrderMessage, env};
use redis::AsyncCommands;
use redis_io::scripts::AcceptOutcome;

const ITEMS: [&str; 3] = ["sku-1", "sku-2", "sku-3"];
/// Long enough that the periodic re-drive (it takes only orders pending longer than the lock
/// TTL) cannot be what applies an order within these tests' waits (30 s at most).
const LOCK_TTL_MS: u64 = 60_000;
/// The consumer's PING_EVERY + PING_TIMEOUT (consumer/src/pubsub/mod.rs), plus slack for a loaded
/// machine.
const DETECTION_BOUND: Duration = Duration::from_secs(5 + 3);
/// c0 has applied every order before the verdict: this bounds only a failing run's wait.
const SETTLE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_subscription_is_noticed_and_replaced() {
    let (fleet, proxy, initial, mut report) = c0_behind_a_proxy().await;

    // The subscription alone here; the test below stalls the command connection too.
    let stalled = proxy.stall_subscribers();
    let since = Instant::now();
    assert_eq!(stalled, 1, "c0 has one subscription through the proxy");
    // The session ended and a new one started (readiness went false before it).
    wait_resubscribed(&fleet, DETECTION_BOUND * 2).await;
    let noticed = since.elapsed();
    assert!(
        noticed <= DETECTION_BOUND,
        "the stall was noticed after {noticed:?}, beyond {DETECTION_BOUND:?}"
    );
    let missed = fleet
        .metric("c0", "eo_consumer_subscription_pings_missed_total")
        .await;
    assert_eq!(missed, 1.0, "the missed PONG is what ended the session");
    // Ready again: its full re-drive is done and it listens on a fresh connection.
    fleet.wait_ready(&fleet.consumers["c0"]).await;

    // Orders placed now can reach c0 only through its new subscription: the new session's
    // full re-drive ended before it was ready, the periodic re-drive takes only orders older
    // than the 60 s lock TTL (wait_applied_by gives up after 30 s), and a shed-triggered
    // re-drive needs a shed (checked below). The recovered counter confirms it.
    let recovered = fleet
        .metric("c0", "eo_consumer_orders_recovered_total")
        .await;
    report.merge(place(&fleet, "after", 20).await);
    fleet.wait_applied_by("c0", 30).await;
    assert_eq!(
        fleet
            .metric("c0", "eo_consumer_orders_recovered_total")
            .await,
        recovered,
        "orders placed after the resubscribe were applied by re-drive, not by the subscription"
    );
    assert_eq!(
        fleet.metric("c0", "eo_consumer_messages_shed_total").await,
        0.0
    );
    let verdict = fleet.verdict(&report, &initial, SETTLE).await;
    assert!(
        verdict.is_clean() && verdict.applied == 30,
        "{}\n{}",
        verdict.summary(),
        fleet.log_tails()
    );
}

/// Every connection of the consumer goes half-open at once: the subscription is replaced after
/// a missed PONG, and the command connection (leases, applies, re-drive) after its first
/// timeout (`redis_io::conn`), so the replica is ready again and applies new orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_command_connection_is_replaced() {
    let (fleet, proxy, initial, mut report) = c0_behind_a_proxy().await;

    assert!(
        proxy.stall_all() >= 2,
        "c0 has two connections through the proxy"
    );
    wait_resubscribed(&fleet, DETECTION_BOUND).await;
    fleet.wait_ready(&fleet.consumers["c0"]).await;
    report.merge(place(&fleet, "after", 20).await);
    fleet.wait_applied_by("c0", 30).await;
    let verdict = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&verdict);
}

/// The order service's group commit gives a whole batch one accept time. With more orders at
/// that score than a re-drive page holds, and the first page's orders staying pending (another
/// replica holds their leases), a cursor that restarts at the last score reads the same page
/// forever and re-drives none of the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_gets_past_a_score_shared_by_more_than_a_page() {
    const BATCH_SIZE: usize = 4;
    let (mut fleet, keys, mut conn) = redis_with_stock().await;
    // One accept call, as one group commit makes it; no consumer hears its messages.
    let batch: Vec<OrderMessage> = (0..50).map(|i| order(&format!("tie-{i:02}"))).collect();
    let outcomes = accept_batch(&mut conn, &keys, DeliveryMode::Pubsub, &batch).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AcceptOutcome::Accepted { .. }))
    );
    let pending: Vec<(String, f64)> = conn.zrange_withscores(keys.pending(), 0, -1).await.unwrap();
    assert_eq!(pending.len(), 50);
    assert!(
        pending.iter().all(|(_, score)| *score == pending[0].1),
        "the batch does not share one score: {pending:?}"
    );
    // Ties are ordered by member, so these make up the first page.
    let held: Vec<&str> = pending[..BATCH_SIZE]
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    for id in &held {
        let lock = keys.lock(&OrderId::parse("orderId", id).unwrap());
        let _: () = redis::cmd("SET")
            .arg(lock)
            .arg("another-replica")
            .arg("PX")
            .arg(600_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    // Its session starts with a full re-drive, which must take every order not held.
    fleet
        .consumer_env
        .push(("BATCH_SIZE", BATCH_SIZE.to_string()));
    fleet.start_consumer("c0", 0).await;
    wait_pending(&fleet, "the 46 orders not held to be applied", &held).await;
    assert_applied(&mut conn, &keys, &batch[BATCH_SIZE..]).await;
}

/// A pending order whose record Redis cannot read (a key of the wrong type) is dropped from the
/// pending index with a log line; it used to fail every re-drive, so the orders behind it were
/// never re-driven and a replica starting its session never became ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_does_not_stop_the_redrive() {
    let (mut fleet, keys, mut conn) = redis_with_stock().await;
    let batch: Vec<OrderMessage> = ["a-broken", "b-good", "c-good"]
        .into_iter()
        .map(order)
        .collect();
    accept_batch(&mut conn, &keys, DeliveryMode::Pubsub, &batch).await;
    let broken = keys.order(&batch[0].order_id);
    let _: () = conn.del(&broken).await.unwrap();
    let _: () = conn.set(&broken, "not a hash").await.unwrap();

    // Its session starts with a full re-drive: it must become ready and apply the good ones.
    fleet.start_consumer("c0", 0).await;
    wait_pending(&fleet, "the good orders to be applied", &[]).await;
    assert_applied(&mut conn, &keys, &batch[1..]).await;
    let untouched: String = conn.get(&broken).await.unwrap();
    assert_eq!(untouched, "not a hash");
}

fn order(order_id: &str) -> OrderMessage {
    OrderMessage {
        id: EventId::new_v7(),
        order_id: OrderId::parse("orderId", order_id).unwrap(),
        items: validate_lines([(ITEMS[0], 1u64)].into_iter()).unwrap(),
    }
}

async fn place(fleet: &Fleet, prefix: &str, n: usize) -> LoadReport {
    place_orders(
        &fleet.order_url(),
        orders(prefix, n, &ITEMS),
        8,
        Duration::from_secs(30),
    )
    .await
}

/// The order service on Redis directly, and c0 reaching Redis through a [`StallProxy`] only,
/// having applied the 10 orders of the returned report: what a test then stalls is c0's alone.
async fn c0_behind_a_proxy() -> (Fleet, StallProxy, HashMap<String, i64>, LoadReport) {
    let mut fleet = Fleet::new(DeliveryMode::Pubsub, LOCK_TTL_MS, false).await;
    fleet.start_order_service().await; // it talks to Redis directly, never through the proxy
    let proxy = StallProxy::start(SocketAddr::from(([127, 0, 0, 1], fleet.redis.port))).await;
    // Applied after the common env, so this REDIS_URL wins (the last value set wins).
    fleet.consumer_env.push((env::REDIS_URL, proxy.redis_url()));
    fleet.start_consumer("c0", 0).await;
    let initial = e2e::load::stock(&fleet.order_url(), &ITEMS, 1_000_000).await;
    let report = place(&fleet, "before", 10).await;
    fleet.wait_applied_by("c0", 10).await;
    (fleet, proxy, initial, report)
}

/// Waits up to `within` for c0 to end its session and start a new one.
async fn wait_resubscribed(fleet: &Fleet, within: Duration) {
    wait_until("c0 to resubscribe", within, || async {
        let reconnects = fleet.metric("c0", "eo_consumer_reconnects_total").await;
        anyhow::ensure!(reconnects >= 1.0, "no reconnect yet");
        Ok(())
    })
    .await;
}

/// A fleet with Redis only (no service yet), [`ITEMS`]`[0]` stocked, its keys and a connection.
async fn redis_with_stock() -> (Fleet, Keys, redis::aio::MultiplexedConnection) {
    let fleet = Fleet::new(DeliveryMode::Pubsub, LOCK_TTL_MS, false).await;
    let keys = fleet.keys();
    let mut conn = fleet.redis.connection().await;
    let _: () = conn.hset(keys.inventory(), ITEMS[0], 1_000).await.unwrap();
    (fleet, keys, conn)
}

/// Waits until the pending index holds exactly `left` (orderIds in index order).
async fn wait_pending(fleet: &Fleet, what: &str, left: &[&str]) {
    let keys = fleet.keys();
    wait_until(what, Duration::from_secs(20), || async {
        let pending: Vec<String> = fleet
            .redis
            .connection()
            .await
            .zrange(keys.pending(), 0, -1)
            .await?;
        anyhow::ensure!(pending == left, "still pending: {pending:?}");
        Ok(())
    })
    .await;
}

/// Every one of `messages` is recorded as applied.
async fn assert_applied(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    messages: &[OrderMessage],
) {
    for message in messages {
        let status: Option<String> = conn
            .hget(keys.order(&message.order_id), field::STATUS)
            .await
            .unwrap();
        assert_eq!(status.as_deref(), Some("applied"), "{}", message.order_id);
    }
}
