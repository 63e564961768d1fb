//! The streams consumer group's housekeeping script against a real redis-server.

use e2e::redis_server::RedisServer;
use protocol::Keys;
use protocol::keys::CONSUMER_GROUP;
use redis::AsyncCommands;
use redis::streams::StreamInfoConsumersReply;
use redis_io::group::ensure_consumer_group;
use redis_io::scripts;

async fn consumers(conn: &mut redis::aio::MultiplexedConnection, keys: &Keys) -> Vec<String> {
    let reply: StreamInfoConsumersReply = conn
        .xinfo_consumers(keys.stream(), CONSUMER_GROUP)
        .await
        .unwrap();
    let mut names: Vec<String> = reply.consumers.into_iter().map(|c| c.name).collect();
    names.sort();
    names
}

/// Runs the script as consumer "me".
async fn forget(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    min_idle_ms: u64,
) -> Vec<String> {
    scripts::FORGET_CONSUMERS
        .key(keys.stream())
        .arg(CONSUMER_GROUP)
        .arg(min_idle_ms)
        .arg("me")
        .invoke_async(conn)
        .await
        .expect("the script runs")
}

#[tokio::test]
async fn only_consumers_with_nothing_pending_are_forgotten() {
    let redis = RedisServer::start(false).await;
    let mut conn = redis.connection().await;
    let keys = Keys::new(&"orders".parse().unwrap());
    ensure_consumer_group(&mut conn, &keys).await.unwrap();
    let _: String = conn
        .xadd(keys.stream(), "*", &[("order", "{}")])
        .await
        .unwrap();
    // "holding" reads the entry and never acknowledges it; "gone" and "me" hold nothing.
    e2e::stream_group::read_new_entries(&mut conn, &keys, "holding").await;
    for name in ["gone", "me"] {
        let _: i64 = conn
            .xgroup_createconsumer(keys.stream(), CONSUMER_GROUP, name)
            .await
            .unwrap();
    }
    assert_eq!(consumers(&mut conn, &keys).await, ["gone", "holding", "me"]);

    // Nobody has been idle for an hour.
    let removed = forget(&mut conn, &keys, 3_600_000).await;
    assert!(removed.is_empty(), "{removed:?}");
    // With no idle bar: the holder keeps its entry, the caller stays, the empty one goes.
    let removed = forget(&mut conn, &keys, 0).await;
    assert_eq!(removed, ["gone"]);
    assert_eq!(consumers(&mut conn, &keys).await, ["holding", "me"]);
}
