//! `inventory-consumer dead-letters list|replay` against a real redis-server and a real fleet:
//! an order dead-lettered in either mode is listed with its reason, replayed once its cause is
//! fixed, applied once, and a second replay changes nothing and says so.

use std::collections::HashMap;

use e2e::bins::{CommandRun, consumer_command};
use e2e::fleet::Fleet;
use e2e::redis_server::RedisServer;
use protocol::order::{EventId, OrderId, validate_lines};
use protocol::{DeliveryMode, Keys, OrderMessage};
use redis::AsyncCommands;

const LOCK_TTL_MS: u64 = 1_000;

/// Runs `inventory-consumer <args>` against `redis_url` / `channel` in `mode`.
async fn cli(redis_url: &str, channel: &str, mode: DeliveryMode, args: &[&str]) -> CommandRun {
    consumer_command(redis_url, &[], channel, mode, args).await
}

async fn fleet_cli(fleet: &Fleet, args: &[&str]) -> CommandRun {
    cli(&fleet.redis.url(), &fleet.channel, fleet.mode, args).await
}

e2e::both_modes!(a_dead_lettered_order_is_listed_replayed_once_fixed_and_applied_once);

async fn a_dead_lettered_order_is_listed_replayed_once_fixed_and_applied_once(mode: DeliveryMode) {
    let mut fleet = Fleet::new(mode, LOCK_TTL_MS, false).await;
    fleet.consumer_env.push(("MAX_DELIVERIES", "2".to_owned()));
    fleet.start_order_service().await;
    fleet.start_consumer("c0", 0).await;
    let keys = fleet.keys();
    let mut conn = fleet.redis.connection().await;
    // A stock value the apply refuses every time.
    let _: () = conn.hset(keys.inventory(), "broken", "1.5").await.unwrap();
    let body =
        serde_json::json!({"orderId": "poisoned", "items": [{"id": "broken", "quantity": 1}]});
    let resp = reqwest::Client::new()
        .post(format!("{}/orders", fleet.order_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    fleet.wait_order_status("poisoned", "dead-lettered").await;

    let list = fleet_cli(&fleet, &["dead-letters", "list"]).await;
    assert!(list.ok, "{}{}", list.stdout, list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    let [line] = lines.as_slice() else {
        panic!("one dead letter: {}", list.stdout)
    };
    assert!(
        line.contains("order=poisoned")
            && line.contains("consumer=c0")
            && line.contains("deliveries=2")
            && line.contains("item broken is not a whole number"),
        "{line}"
    );
    // JSON Lines: one object per dead letter, each on its own line.
    let json = fleet_cli(&fleet, &["dead-letters", "list", "--json"]).await;
    let objects = json_lines(&json.stdout);
    let [letter] = objects.as_slice() else {
        panic!("one dead letter: {}", json.stdout)
    };
    assert_eq!(letter["orderId"], "poisoned");
    assert_eq!(letter["deliveries"], 2);
    assert!(letter["timeMs"].as_u64().is_some(), "{letter}");

    // The operator fixes the cause, then replays.
    let _: () = conn.hset(keys.inventory(), "broken", 3).await.unwrap();
    let replay = fleet_cli(&fleet, &["dead-letters", "replay", "poisoned"]).await;
    assert!(replay.ok, "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay.stdout.contains("order poisoned") && replay.stdout.contains("replayed"),
        "{}",
        replay.stdout
    );
    fleet.wait_order_status("poisoned", "applied").await;
    let record = fleet.order_record("poisoned").await.unwrap();
    assert!(
        record.get("reason").is_none(),
        "the old reason is gone: {record}"
    );
    let left: i64 = conn.hget(keys.inventory(), "broken").await.unwrap();
    assert_eq!(left, 2, "taken once");
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    assert_eq!(dead, 0, "the dead letter is deleted");

    // Again, by orderId and with --all: nothing to do, said so, exit 0, nothing taken.
    let again = fleet_cli(&fleet, &["dead-letters", "replay", "poisoned"]).await;
    assert!(
        again.ok && again.stdout.contains("no dead letter"),
        "{}{}",
        again.stdout,
        again.stderr
    );
    let all = fleet_cli(&fleet, &["dead-letters", "replay", "--all"]).await;
    assert!(
        all.ok && all.stdout.contains("no dead letters"),
        "{}",
        all.stdout
    );
    let list = fleet_cli(&fleet, &["dead-letters", "list"]).await;
    assert!(list.stdout.contains("no dead letters"), "{}", list.stdout);
    // Nothing was delivered again: no pending order, no stream entry, the stock as it was.
    let (pending, live): (i64, i64) = redis::pipe()
        .zcard(keys.pending())
        .xlen(keys.stream())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((pending, live), (0, 0));
    let left: i64 = conn.hget(keys.inventory(), "broken").await.unwrap();
    assert_eq!(left, 2, "still taken once");
}

fn order(event: &str, order_id: &str) -> OrderMessage {
    OrderMessage {
        id: EventId::parse("id", event).unwrap(),
        order_id: OrderId::parse("orderId", order_id).unwrap(),
        items: validate_lines([("a", 1u64)].into_iter()).unwrap(),
    }
}

/// `list --json`'s output, one object per line.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// The fields of a dead letter carrying `payload`, as the dead-lettering scripts write them.
fn dead_letter_fields(payload: &str) -> [(&str, &str); 5] {
    [
        ("entry", ""),
        ("order", payload),
        ("reason", "apply failed after 5 deliveries: test"),
        ("consumer", "c-9"),
        ("deliveries", "5"),
    ]
}

/// Writes a dead letter carrying `payload`.
async fn add_dead_letter(conn: &mut redis::aio::MultiplexedConnection, keys: &Keys, payload: &str) {
    let _: String = conn
        .xadd(keys.dead_letter(), "*", &dead_letter_fields(payload))
        .await
        .unwrap();
}

/// Writes the applied record of `message`, as a replay before this one leaves it.
async fn add_applied_record(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    message: &OrderMessage,
) {
    let _: () = conn
        .hset_multiple(
            keys.order(&message.order_id),
            &[
                ("id", message.id.as_str()),
                ("status", "applied"),
                ("message", message.to_json().as_str()),
            ],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replay_keeps_what_it_cannot_replay_and_fails() {
    let redis = RedisServer::start(false).await;
    let mut conn = redis.connection().await;
    let channel = "orders";
    let keys = Keys::new(&channel.parse().unwrap());
    let record = |order_id: &str| keys.order(&OrderId::parse("orderId", order_id).unwrap());
    // o-conflict's record belongs to another event; o-gone has no record; o-done was replayed
    // before (its record is applied); one payload is no order at all.
    let _: () = conn
        .hset_multiple(
            record("o-conflict"),
            &[("id", "e-owner"), ("status", "applied"), ("message", "{}")],
        )
        .await
        .unwrap();
    let done = order("e-done", "o-done");
    add_applied_record(&mut conn, &keys, &done).await;
    for payload in [
        order("e-other", "o-conflict").to_json(),
        order("e-gone", "o-gone").to_json(),
        done.to_json(),
        "not json".to_owned(),
    ] {
        add_dead_letter(&mut conn, &keys, &payload).await;
    }
    let url = redis.url();
    let replay_all = || {
        cli(
            &url,
            channel,
            DeliveryMode::Pubsub,
            &["dead-letters", "replay", "--all"],
        )
    };

    let run = replay_all().await;
    assert!(!run.ok, "some could not be replayed: {}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines[0].contains("order o-conflict")
            && lines[0].contains("belongs to event e-owner")
            && lines[0].ends_with("kept"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("order o-gone") && lines[1].contains("no record"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("order o-done") && lines[2].contains("already applied"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("not replayable") && lines[3].contains("not an order"),
        "{}",
        lines[3]
    );
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    assert_eq!(dead, 3, "only the replayed-before one is deleted");
    let status: String = conn.hget(record("o-conflict"), "status").await.unwrap();
    assert_eq!(status, "applied", "another event's record is left alone");
    let published: i64 = conn.zcard(keys.pending()).await.unwrap();
    assert_eq!(published, 0, "nothing was delivered");

    // A replay in the mode the order service does not deliver by would reach no consumer.
    let _: () = conn.set(keys.delivery_mode(), "streams").await.unwrap();
    let run = replay_all().await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("DELIVERY_MODE") && run.stderr.contains("`streams`"),
        "{}",
        run.stderr
    );
}

/// Both commands read the stream a page (1,000 entries) at a time, never whole: across pages
/// every dead letter is listed once and in order, and a replay by orderId finds each of the
/// order's dead letters on whichever page, deletes them behind its cursor without losing its
/// place, and names the orderId that has none at the end.
#[tokio::test]
async fn list_and_replay_read_the_stream_page_by_page() {
    const LETTERS: usize = 2_500;
    let redis = RedisServer::start(false).await;
    let mut conn = redis.connection().await;
    let channel = "orders";
    let keys = Keys::new(&channel.parse().unwrap());
    // o-late was replayed before; its two dead letters sit on the first page and on the last.
    let late = order("e-late", "o-late");
    add_applied_record(&mut conn, &keys, &late).await;
    let mut pipe = redis::pipe();
    for n in 0..LETTERS {
        let payload = if n == 5 || n == LETTERS - 5 {
            late.to_json()
        } else {
            order(&format!("e-{n}"), &format!("o-{n}")).to_json()
        };
        pipe.xadd(keys.dead_letter(), "*", &dead_letter_fields(&payload))
            .ignore();
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    let written: Vec<(String, HashMap<String, String>)> =
        conn.xrange_all(keys.dead_letter()).await.unwrap();
    let written: Vec<&str> = written.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(written.len(), LETTERS);

    let url = redis.url();
    let run = |args| cli(&url, channel, DeliveryMode::Pubsub, args);
    let list = run(&["dead-letters", "list"]).await;
    assert!(list.ok, "{}", list.stderr);
    let listed: Vec<&str> = list
        .stdout
        .lines()
        .map(|line| line.split_once(' ').expect("the entry id first").0)
        .collect();
    assert_eq!(listed, written, "each dead letter once, oldest first");
    let json = run(&["dead-letters", "list", "--json"]).await;
    assert!(json.ok, "{}", json.stderr);
    let objects = json_lines(&json.stdout);
    let listed: Vec<&str> = objects
        .iter()
        .map(|o| o["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(listed, written, "each dead letter once, oldest first");

    let replay = run(&["dead-letters", "replay", "o-never", "o-late"]).await;
    assert!(replay.ok, "{}{}", replay.stdout, replay.stderr);
    let lines: Vec<&str> = replay.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", replay.stdout);
    for (line, id) in lines[..2].iter().zip([written[5], written[LETTERS - 5]]) {
        assert!(
            line.starts_with(&format!("order o-late (dead letter {id})"))
                && line.contains("already applied"),
            "{line}"
        );
    }
    assert!(
        lines[2].starts_with("order o-never: no dead letter"),
        "{}",
        lines[2]
    );
    let dead: usize = conn.xlen(keys.dead_letter()).await.unwrap();
    assert_eq!(
        dead,
        LETTERS - 2,
        "both of o-late's dead letters are deleted"
    );
}
