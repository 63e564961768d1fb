//! The streams-mode consumer group seen from a test: act as a consumer without running one.

use protocol::Keys;
use protocol::keys::CONSUMER_GROUP;
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};

/// Reads every new entry as consumer `consumer` (creating it), leaving them pending for it.
pub async fn read_new_entries(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    consumer: &str,
) {
    let options = StreamReadOptions::default().group(CONSUMER_GROUP, consumer);
    let _: Option<StreamReadReply> = conn
        .xread_options(&[keys.stream()], &[">"], &options)
        .await
        .expect("XREADGROUP");
}
