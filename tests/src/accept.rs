//! The order service's accept step seen from a test: record a batch and make it pending with
//! one call of the accept script, as one group commit does, without running the service.

use protocol::{DeliveryMode, Keys, OrderMessage};
use redis_io::scripts::{self, AcceptOutcome};

/// Accepts `batch` in one script call for a fleet delivering by `mode`; one outcome per order,
/// in the batch's order.
pub async fn accept_batch(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    mode: DeliveryMode,
    batch: &[OrderMessage],
) -> Vec<AcceptOutcome> {
    let refs: Vec<&OrderMessage> = batch.iter().collect();
    let reply = scripts::accept_invocation(keys, mode, &refs)
        .invoke_async(conn)
        .await
        .expect("the accept script runs");
    scripts::parse_accept_reply(reply, batch.len()).expect("a well-formed reply")
}
