//! The apply script against a real redis-server, order by order: what the fault suite can only
//! observe in aggregate.

use std::collections::HashMap;

use e2e::redis_server::RedisServer;
use protocol::keys::CONSUMER_GROUP;
use protocol::message::STREAM_FIELD;
use protocol::order::{EventId, OrderId, validate_lines};
use protocol::{Keys, OrderMessage};
use redis::AsyncCommands;
use redis_io::scripts::{self, ApplyItem, ApplyOutcome};

const SETTLER: scripts::Settler<'static> = scripts::Settler {
    consumer: "tester",
    retention_ms: 60_000,
    dead_letter_maxlen: 100,
};

fn order(id: &str, lines: &[(&str, u64)]) -> OrderMessage {
    OrderMessage {
        id: EventId::parse("id", id).unwrap(),
        order_id: OrderId::parse("orderId", id).unwrap(),
        items: validate_lines(lines.iter().copied()).unwrap(),
    }
}

/// A fresh redis-server whose inventory holds `stock`, and the fleet's keys.
async fn with_stock<V: redis::ToRedisArgs + Send + Sync>(
    stock: &[(&str, V)],
) -> (RedisServer, redis::aio::MultiplexedConnection, Keys) {
    let redis = RedisServer::start(false).await;
    let mut conn = redis.connection().await;
    let keys = Keys::new(&"orders".parse().unwrap());
    let _: () = conn.hset_multiple(keys.inventory(), stock).await.unwrap();
    (redis, conn, keys)
}

/// Applies `orders` as Pub/Sub deliveries (no stream entry).
async fn apply(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    orders: &[OrderMessage],
) -> Vec<ApplyOutcome> {
    let items: Vec<ApplyItem> = orders
        .iter()
        .map(|message| ApplyItem {
            message,
            entry_id: None,
        })
        .collect();
    apply_items(conn, keys, None, &items).await
}

/// Applies `message` as a streams delivery: an entry added to the stream and read through the
/// consumer group by `tester`, as a consumer holds it when it applies.
async fn apply_from_stream(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    message: &OrderMessage,
) -> Vec<ApplyOutcome> {
    redis_io::group::ensure_consumer_group(conn, keys)
        .await
        .expect("the consumer group");
    let entry: String = conn
        .xadd(keys.stream(), "*", &[(STREAM_FIELD, message.to_json())])
        .await
        .expect("XADD");
    e2e::stream_group::read_new_entries(conn, keys, SETTLER.consumer).await;
    let item = ApplyItem {
        message,
        entry_id: Some(&entry),
    };
    apply_items(conn, keys, Some(CONSUMER_GROUP), &[item]).await
}

async fn apply_items(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    group: Option<&str>,
    items: &[ApplyItem<'_>],
) -> Vec<ApplyOutcome> {
    let invocation = scripts::apply_invocation(keys, &SETTLER, group, items);
    let reply = invocation
        .invoke_async(conn)
        .await
        .expect("the apply script runs");
    scripts::parse_apply_reply(reply, items.len()).expect("a well-formed reply")
}

fn labels(outcomes: &[ApplyOutcome]) -> Vec<&'static str> {
    outcomes.iter().map(ApplyOutcome::label).collect()
}

#[tokio::test]
async fn a_batch_applies_each_order_once_all_lines_or_none() {
    let (_redis, mut conn, keys) = with_stock(&[("a", 5), ("b", 1)]).await;

    let batch = [
        order("o1", &[("a", 2), ("b", 1)]),
        // b is gone after o1: nothing of o2 may be taken, not even its `a` line.
        order("o2", &[("a", 1), ("b", 1)]),
        // Lines for one item are summed before the check: 2 + 2 > 3 left.
        order("o3", &[("a", 2), ("a", 2)]),
        order("o4", &[("a", 3)]),
    ];
    assert_eq!(
        labels(&apply(&mut conn, &keys, &batch).await),
        ["applied", "rejected", "rejected", "applied"]
    );
    let stock: HashMap<String, i64> = conn.hgetall(keys.inventory()).await.unwrap();
    assert_eq!((stock["a"], stock["b"]), (0, 0));

    // Delivered again (a late replica, a reclaim): nothing changes, and each says how it ended.
    let again = apply(&mut conn, &keys, &batch).await;
    assert_eq!(labels(&again), ["duplicate"; 4]);
    assert_eq!(
        again[1],
        ApplyOutcome::Duplicate {
            status: "rejected".into(),
            by: "tester".into()
        }
    );
    let pending: i64 = conn.zcard(keys.pending()).await.unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn an_order_redis_refuses_does_not_stop_the_ones_behind_it() {
    let (_redis, mut conn, keys) = with_stock(&[("a", 10)]).await;
    let broken = order("broken", &[("a", 1)]);
    // A record key of the wrong type: every read of it fails with WRONGTYPE.
    let _: () = conn
        .set(keys.order(&broken.order_id), "not a hash")
        .await
        .unwrap();

    let batch = [
        order("before", &[("a", 1)]),
        broken,
        order("after", &[("a", 1)]),
    ];
    let outcomes = apply(&mut conn, &keys, &batch).await;
    assert_eq!(labels(&outcomes), ["applied", "error", "applied"]);
    assert!(
        matches!(&outcomes[1], ApplyOutcome::Failed { error } if error.contains("WRONGTYPE")),
        "{outcomes:?}"
    );
    let left: i64 = conn.hget(keys.inventory(), "a").await.unwrap();
    assert_eq!(left, 8, "the refused order took nothing");
}

#[tokio::test]
async fn a_stock_value_that_is_not_a_whole_number_fails_only_the_orders_that_need_it() {
    let (_redis, mut conn, keys) = with_stock(&[("a", "10"), ("b", "1.5"), ("c", "007")]).await;

    let batch = [
        order("needs-b", &[("a", 1), ("b", 1)]),
        order("only-a", &[("a", 2)]),
        // HINCRBY refuses leading zeros, so the check does too.
        order("needs-c", &[("c", 1)]),
    ];
    let outcomes = apply(&mut conn, &keys, &batch).await;
    assert_eq!(labels(&outcomes), ["error", "applied", "error"]);
    assert!(
        matches!(&outcomes[0], ApplyOutcome::Failed { error } if error.contains("item b is not a whole number")),
        "{outcomes:?}"
    );
    let stock: HashMap<String, String> = conn.hgetall(keys.inventory()).await.unwrap();
    assert_eq!(
        (
            stock["a"].as_str(),
            stock["b"].as_str(),
            stock["c"].as_str()
        ),
        ("8", "1.5", "007")
    );
    let status: Option<String> = conn
        .hget(keys.order(&batch[0].order_id), "status")
        .await
        .unwrap();
    assert_eq!(status, None, "the failed order left no done marker");
}

#[tokio::test]
async fn an_order_without_a_record_gets_one_when_applied() {
    // A starting-design publisher sends straight to the channel: no accept, so no record.
    let (_redis, mut conn, keys) = with_stock(&[("a", 3)]).await;
    let raw = order("1732700000123", &[("a", 1)]);
    assert_eq!(
        labels(&apply(&mut conn, &keys, std::slice::from_ref(&raw)).await),
        ["applied"]
    );
    let record: HashMap<String, String> = conn.hgetall(keys.order(&raw.order_id)).await.unwrap();
    assert_eq!(record["id"], "1732700000123");
    assert_eq!(record["status"], "applied");
    assert_eq!(record["consumer"], "tester");
    assert_eq!(
        OrderMessage::parse(record["message"].as_bytes()).unwrap(),
        raw
    );
    let ttl: i64 = conn.pttl(keys.order(&raw.order_id)).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 60_000,
        "the record expires after the retention: {ttl}"
    );
}

#[tokio::test]
async fn a_batch_naming_thousands_of_items_is_applied() {
    // More distinct items than one Lua unpack can pass to HMGET.
    let names: Vec<String> = (0..9_000).map(|i| format!("item-{i}")).collect();
    let stock: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let (_redis, mut conn, keys) = with_stock(&stock).await;
    let batch: Vec<OrderMessage> = names
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let lines: Vec<(&str, u64)> = chunk.iter().map(|n| (n.as_str(), 1)).collect();
            order(&format!("big-{i}"), &lines)
        })
        .collect();
    let outcomes = apply(&mut conn, &keys, &batch).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ApplyOutcome::Applied { .. })),
        "{:?}",
        &outcomes[..3]
    );
    let left: Vec<i64> = conn.hvals(keys.inventory()).await.unwrap();
    assert!(left.iter().all(|n| *n == 0), "every item taken once");
}

#[tokio::test]
async fn an_event_reusing_an_order_id_is_refused_and_dead_lettered_from_a_stream() {
    let (_redis, mut conn, keys) = with_stock(&[("a", 10)]).await;
    let first = order("e-first", &[("a", 1)]);
    // Another event (say a starting-design publisher's) under the same orderId.
    let mut other = order("e-other", &[("a", 5)]);
    other.order_id = first.order_id.clone();
    assert_eq!(
        labels(&apply(&mut conn, &keys, &[first]).await),
        ["applied"]
    );

    let outcomes = apply_from_stream(&mut conn, &keys, &other).await;
    assert_eq!(
        outcomes,
        [ApplyOutcome::Conflict {
            owner: "e-first".into()
        }]
    );
    let left: i64 = conn.hget(keys.inventory(), "a").await.unwrap();
    assert_eq!(left, 9, "only the first event took stock");
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    let live: usize = conn.xlen(keys.stream()).await.unwrap();
    assert_eq!((dead, live), (1, 0), "moved to the dead-letter stream");
}

#[tokio::test]
async fn a_pending_index_of_the_wrong_type_refuses_the_batch_before_writing() {
    // The batch's last writes (ZREM of the pending index) come after every order's record:
    // they must not be able to fail there.
    let (_redis, mut conn, keys) = with_stock(&[("a", 10)]).await;
    let _: () = conn.set(keys.pending(), "not a zset").await.unwrap();
    let batch = [order("o1", &[("a", 1)])];
    let items = [ApplyItem {
        message: &batch[0],
        entry_id: None,
    }];
    let result: redis::RedisResult<redis::Value> =
        scripts::apply_invocation(&keys, &SETTLER, None, &items)
            .invoke_async(&mut conn)
            .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("WRONGTYPE"), "{err}");
    let left: i64 = conn.hget(keys.inventory(), "a").await.unwrap();
    let recorded: bool = conn.exists(keys.order(&batch[0].order_id)).await.unwrap();
    assert_eq!((left, recorded), (10, false), "nothing was written");
}

#[tokio::test]
async fn a_dead_lettered_order_is_final_for_every_later_delivery() {
    let (_redis, mut conn, keys) = with_stock(&[("a", 10)]).await;
    let late = order("late", &[("a", 1)]);
    let record = keys.order(&late.order_id);
    // As dead_letter.lua / refused.lua leave it, with the order still in the pending index and
    // its pubsub refusal count still there (a replica raced the dead-lettering).
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg(&[
            ("id", "late"),
            ("message", late.to_json().as_str()),
            ("status", "dead-lettered"),
            ("reason", "apply failed after 5 deliveries"),
            ("consumer", "c-9"),
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = conn.zadd(keys.pending(), "late", 1).await.unwrap();
    let _: () = conn.hset(keys.refusals(), "late", 4).await.unwrap();

    // A late pubsub delivery: a duplicate, nothing taken, and it leaves the pending index.
    let outcomes = apply(&mut conn, &keys, std::slice::from_ref(&late)).await;
    assert_eq!(
        outcomes,
        [ApplyOutcome::Duplicate {
            status: "dead-lettered".into(),
            by: "c-9".into()
        }]
    );
    let status: String = conn.hget(&record, "status").await.unwrap();
    let left: i64 = conn.hget(keys.inventory(), "a").await.unwrap();
    let pending: i64 = conn.zcard(keys.pending()).await.unwrap();
    let counted: bool = conn.hexists(keys.refusals(), "late").await.unwrap();
    assert_eq!(
        (status.as_str(), left, pending, counted),
        ("dead-lettered", 10, 0, false)
    );

    // A late stream delivery: the same, and the entry is settled (acknowledged and deleted).
    let outcomes = apply_from_stream(&mut conn, &keys, &late).await;
    assert_eq!(labels(&outcomes), ["duplicate"]);
    let live: usize = conn.xlen(keys.stream()).await.unwrap();
    let left: i64 = conn.hget(keys.inventory(), "a").await.unwrap();
    assert_eq!((live, left), (0, 10), "settled, nothing taken");
}

/// Counts `refusals` of `message` (pubsub, MAX_DELIVERIES 3) in one script call.
async fn refuse(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    message: &OrderMessage,
) -> scripts::RefusalOutcome {
    let refusal = scripts::Refusal {
        message,
        error: "stock of item a is not a whole number Redis can decrement: 1.5",
    };
    let reply = scripts::refused_invocation(keys, &SETTLER, 3, &[refusal])
        .invoke_async(conn)
        .await
        .expect("the refused script runs");
    let mut outcomes = scripts::parse_refused_reply(reply, 1).expect("a well-formed reply");
    outcomes.pop().unwrap()
}

#[tokio::test]
async fn a_pubsub_order_refused_max_deliveries_times_is_dead_lettered_with_its_record() {
    use scripts::RefusalOutcome::*;
    let (_redis, mut conn, keys) = with_stock(&[("a", "1.5")]).await;
    let poisoned = order("poisoned", &[("a", 1)]);
    // Accepted as the order service does: a record and a pending-index entry.
    let reply = scripts::accept_invocation(&keys, protocol::DeliveryMode::Pubsub, &[&poisoned])
        .invoke_async::<redis::Value>(&mut conn)
        .await
        .unwrap();
    scripts::parse_accept_reply(reply, 1).unwrap();
    // What the apply refuses with, in a real run.
    assert_eq!(
        labels(&apply(&mut conn, &keys, std::slice::from_ref(&poisoned)).await),
        ["error"]
    );

    assert_eq!(
        refuse(&mut conn, &keys, &poisoned).await,
        Counted { count: 1 }
    );
    assert_eq!(
        refuse(&mut conn, &keys, &poisoned).await,
        Counted { count: 2 }
    );
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    assert_eq!(dead, 0, "not before the limit");
    assert_eq!(
        refuse(&mut conn, &keys, &poisoned).await,
        DeadLettered { count: 3 }
    );

    let record: HashMap<String, String> =
        conn.hgetall(keys.order(&poisoned.order_id)).await.unwrap();
    assert_eq!(record["status"], "dead-lettered");
    assert_eq!(record["consumer"], "tester");
    assert!(
        record["reason"].starts_with("apply failed after 3 deliveries: stock of item a"),
        "{record:?}"
    );
    let pending: i64 = conn.zcard(keys.pending()).await.unwrap();
    let counts: i64 = conn.hlen(keys.refusals()).await.unwrap();
    assert_eq!(
        (pending, counts),
        (0, 0),
        "out of the pending index, count removed"
    );
    let letters: redis::streams::StreamRangeReply =
        conn.xrange_all(keys.dead_letter()).await.unwrap();
    let [letter] = letters.ids.as_slice() else {
        panic!("{letters:?}")
    };
    let field = |f: &str| letter.get::<String>(f).unwrap_or_default();
    assert_eq!(
        field("order"),
        record["message"],
        "the payload as it arrived"
    );
    assert_eq!(field("reason"), record["reason"]);
    assert_eq!(
        (field("deliveries").as_str(), field("entry").as_str()),
        ("3", "")
    );

    // Refused again by a replica that raced the dead-lettering: nothing more happens.
    assert_eq!(refuse(&mut conn, &keys, &poisoned).await, Done);
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    assert_eq!(dead, 1);
}

/// A starting-design publisher's order has no record until it is done: dead-lettering it writes
/// one, so a late delivery finds it final instead of applying it.
#[tokio::test]
async fn an_order_without_a_record_is_dead_lettered_with_one_and_stays_final() {
    use scripts::RefusalOutcome::*;
    let (_redis, mut conn, keys) = with_stock(&[("a", "1.5")]).await;
    let o = order("legacy", &[("a", 1)]);
    for count in 1..3 {
        assert_eq!(refuse(&mut conn, &keys, &o).await, Counted { count });
    }
    assert_eq!(
        refuse(&mut conn, &keys, &o).await,
        DeadLettered { count: 3 }
    );
    let record: HashMap<String, String> = conn.hgetall(keys.order(&o.order_id)).await.unwrap();
    assert_eq!(record["status"], "dead-lettered");
    assert_eq!(record["id"], o.id.as_str());
    assert_eq!(record["message"], o.to_json());
    // The cause is fixed, and a late delivery arrives: the record is final.
    let _: () = conn.hset(keys.inventory(), "a", 4).await.unwrap();
    assert_eq!(labels(&apply(&mut conn, &keys, &[o]).await), ["duplicate"]);
    let stock: i64 = conn.hget(keys.inventory(), "a").await.unwrap();
    assert_eq!(stock, 4, "nothing taken");
}

/// A count that is not a number (written by hand) would fail every delivery of its order and
/// keep it pending forever: it starts again, and the other orders are counted as usual.
#[tokio::test]
async fn a_count_that_is_not_a_number_starts_again() {
    use scripts::RefusalOutcome::*;
    let (_redis, mut conn, keys) = with_stock(&[("a", "1.5")]).await;
    let (broken, fine) = (order("broken", &[("a", 1)]), order("fine", &[("a", 1)]));
    let _: () = conn
        .hset(keys.refusals(), broken.order_id.as_str(), "many")
        .await
        .unwrap();
    let error = "stock of item a is not a whole number Redis can decrement: 1.5";
    let refusals = [&broken, &fine].map(|message| scripts::Refusal { message, error });
    let reply = scripts::refused_invocation(&keys, &SETTLER, 3, &refusals)
        .invoke_async(&mut conn)
        .await
        .unwrap();
    let outcomes = scripts::parse_refused_reply(reply, 2).unwrap();
    assert_eq!(outcomes, [Counted { count: 1 }, Counted { count: 1 }]);
    let count: String = conn
        .hget(keys.refusals(), broken.order_id.as_str())
        .await
        .unwrap();
    assert_eq!(count, "1");
}

/// Streams too: an order without a record that is dead-lettered gets a dead-lettered record,
/// so a late delivery (or a re-publish) finds it final, and a replay finds it.
#[tokio::test]
async fn a_stream_entry_without_a_record_is_dead_lettered_with_one() {
    let (_redis, mut conn, keys) = with_stock(&[("a", "1.5")]).await;
    redis_io::group::ensure_consumer_group(&mut conn, &keys)
        .await
        .unwrap();
    let o = order("legacy-stream", &[("a", 1)]);
    let payload = o.to_json();
    scripts::dead_letter_entry_invocation(
        &keys,
        &SETTLER,
        "1-0",
        payload.as_bytes(),
        "apply failed after 3 deliveries: stock of item a is not a whole number",
        Some(3),
        Some(&o),
    )
    .invoke_async::<redis::Value>(&mut conn)
    .await
    .unwrap();
    let record: HashMap<String, String> = conn.hgetall(keys.order(&o.order_id)).await.unwrap();
    assert_eq!(record["status"], "dead-lettered");
    assert_eq!(
        (record["id"].as_str(), record["message"].as_str()),
        (o.id.as_str(), payload.as_str())
    );
    let _: () = conn.hset(keys.inventory(), "a", 4).await.unwrap();
    assert_eq!(labels(&apply(&mut conn, &keys, &[o]).await), ["duplicate"]);
}

#[tokio::test]
async fn an_order_done_after_some_refusals_loses_its_count() {
    let (_redis, mut conn, keys) = with_stock(&[("a", "1.5")]).await;
    let o = order("o1", &[("a", 1)]);
    let _ = refuse(&mut conn, &keys, &o).await;
    let _: () = conn.hset(keys.inventory(), "a", 4).await.unwrap();
    assert_eq!(labels(&apply(&mut conn, &keys, &[o]).await), ["applied"]);
    let counts: i64 = conn.hlen(keys.refusals()).await.unwrap();
    assert_eq!(counts, 0);
}

#[tokio::test]
async fn the_dead_letter_stream_is_trimmed_near_its_maxlen() {
    let (_redis, mut conn, keys) = with_stock(&[("a", 10)]).await;
    redis_io::group::ensure_consumer_group(&mut conn, &keys)
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        let entry = format!("{}-0", i + 1);
        pipe.invoke_script(&scripts::dead_letter_entry_invocation(
            &keys,
            &SETTLER,
            &entry,
            b"not json",
            "message is not a JSON object",
            None,
            None,
        ))
        .ignore();
    }
    scripts::query_pipeline::<()>(&mut conn, &pipe)
        .await
        .expect("the dead-letter script runs");
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    // `MAXLEN ~` trims whole radix-tree nodes (100 entries by default), never below the cap.
    assert!(
        (100..=300).contains(&dead),
        "{dead} dead letters kept for a maxlen of 100"
    );
}
