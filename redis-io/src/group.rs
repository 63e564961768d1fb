//! The streams-mode consumer group. Both the order service and the consumers create it (whoever
//! starts first), at the stream's beginning, so entries appended before any consumer existed
//! are delivered too.

use protocol::keys::{CONSUMER_GROUP, Keys};

pub async fn ensure_consumer_group(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.stream())
        .arg(CONSUMER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}
