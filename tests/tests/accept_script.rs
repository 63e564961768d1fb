//! The accept script against a real redis-server: what the order service's group commit relies
//! on, order by order.

use e2e::accept::accept_batch;
use e2e::redis_server::RedisServer;
use protocol::order::{EventId, OrderId, validate_lines};
use protocol::{DeliveryMode, Keys, OrderMessage};
use redis::AsyncCommands;
use redis_io::scripts::{self, AcceptOutcome};

fn order(order_id: &str) -> OrderMessage {
    OrderMessage {
        id: EventId::new_v7(),
        order_id: OrderId::parse("orderId", order_id).unwrap(),
        items: validate_lines([("a", 1u64)].into_iter()).unwrap(),
    }
}

#[tokio::test]
async fn an_order_redis_refuses_leaves_the_rest_of_the_batch_recorded_and_pending() {
    let redis = RedisServer::start(false).await;
    let mut conn = redis.connection().await;
    let keys = Keys::new(&"orders".parse().unwrap());
    let batch = [order("one"), order("broken"), order("three"), order("one")];
    // A record key of the wrong type: every read of it fails with WRONGTYPE.
    let _: () = conn
        .set(keys.order(&batch[1].order_id), "not a hash")
        .await
        .unwrap();

    let outcomes = accept_batch(&mut conn, &keys, DeliveryMode::Pubsub, &batch).await;
    assert!(
        matches!(&outcomes[0], AcceptOutcome::Accepted { id, .. } if *id == batch[0].id.as_str())
    );
    assert!(
        matches!(&outcomes[1], AcceptOutcome::Failed { error } if error.contains("WRONGTYPE")),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[2], AcceptOutcome::Accepted { .. }));
    // The same orderId later in the batch finds the first one.
    assert!(
        matches!(&outcomes[3], AcceptOutcome::Exists { id, .. } if *id == batch[0].id.as_str()),
        "{outcomes:?}"
    );
    let mut pending: Vec<String> = conn.zrange(keys.pending(), 0, -1).await.unwrap();
    pending.sort();
    assert_eq!(pending, ["one", "three"]);
}

#[tokio::test]
async fn a_pending_index_of_the_wrong_type_refuses_the_batch_before_writing() {
    let redis = RedisServer::start(false).await;
    let mut conn = redis.connection().await;
    let keys = Keys::new(&"orders".parse().unwrap());
    let _: () = conn.set(keys.pending(), "not a zset").await.unwrap();
    let batch = [order("one")];
    let refs: Vec<&OrderMessage> = batch.iter().collect();
    let result: redis::RedisResult<redis::Value> =
        scripts::accept_invocation(&keys, DeliveryMode::Pubsub, &refs)
            .invoke_async(&mut conn)
            .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("WRONGTYPE"), "{err}");
    let exists: bool = conn.exists(keys.order(&batch[0].order_id)).await.unwrap();
    assert!(!exists, "nothing was recorded");
}
