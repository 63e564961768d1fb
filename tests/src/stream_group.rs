//! The streams-mode consumer group seen from a test: act as a consumer without running one.

use protocol::Keys;
use protocol::keys::CONSUMER_GROUP;

/// Reads every new entry as consumer `consumer` (creating it), leaving them pending for it.
pub async fn read_new_entries(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    consumer: &str,
) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(CONSUMER_GROUP)
        .arg(consumer)
        .arg("STREAMS")
        .arg(keys.stream())
        .arg(">")
        .query_async(conn)
        .await
        .expect("XREADGROUP");
}
