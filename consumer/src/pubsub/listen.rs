//! The bounded intake queue between the subscription and the appliers. The Redis client reads
//! the subscription into an unbounded buffer of its own, so `listen` drains it at once into a
//! queue of `INTAKE_CAPACITY` and sheds what does not fit; `work` takes batches from the queue.
//! A shed order loses nothing: it stays in the pending index, and the replica that shed
//! re-drives it once it has caught up.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use redis::aio::PubSubStream;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::apply::apply_all;
use crate::context::Context;
use crate::parse::parse_or_report;
use crate::pubsub::{lease::take_leases, redrive};

/// Takes batches from the intake queue and applies them, until `stop` (shutdown, or the other
/// worker failed) or until the queue is closed and empty. Two of these run, so one batch is
/// being decided while the other waits on Redis.
pub async fn work(
    ctx: &Context,
    intake: &Mutex<mpsc::Receiver<Vec<u8>>>,
    shed: &AtomicBool,
    stop: &CancellationToken,
) -> redis::RedisResult<()> {
    let batch_size = ctx.config.batch_size as usize;
    let mut payloads = Vec::with_capacity(batch_size);
    loop {
        // Everything already queued, up to a batch, so one round trip serves many orders.
        // `stop` stops the taking; a batch already taken is finished (or handed back).
        let taken = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            taken = async { intake.lock().await.recv_many(&mut payloads, batch_size).await } => taken,
        };
        if taken == 0 {
            return Ok(()); // the listener has stopped and everything queued is done
        }
        let orders = payloads
            .drain(..)
            .filter_map(|payload| parse_or_report(ctx, &payload).ok())
            .collect();
        let won = take_leases(ctx, orders, None).await;
        apply_all(ctx, won, stop).await;
        // Shed orders are only in the pending index. Once this replica has caught up (the
        // queue is empty), it takes them from there instead of leaving them to wait out the
        // lock TTL. A short batch emptied the queue; if the other worker holds it, it waits on
        // an empty one or is taking the last of it.
        let caught_up = caught_up(
            taken,
            batch_size,
            intake.try_lock().ok().map(|queue| queue.is_empty()),
        );
        if caught_up && shed.swap(false, Ordering::Relaxed) {
            redrive::redrive(ctx, None, stop).await?;
        }
    }
}

/// Moves messages from the subscription into the intake queue as fast as they arrive, shedding
/// those that do not fit. Returns `Ok` when told to stop, `Err` when the subscription closes.
pub async fn listen(
    ctx: &Context,
    mut messages: PubSubStream,
    queue: mpsc::Sender<Vec<u8>>,
    shed: &AtomicBool,
    stop: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut shedding = false;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            msg = messages.next() => msg,
        };
        let Some(msg) = msg else { break };
        // The payload alone: a queued `Msg` would also hold its channel name and reply frame,
        // which made the queue's peak about a third larger in the bench.
        match queue.try_send(msg.get_payload_bytes().to_vec()) {
            Ok(()) => shedding = false,
            Err(_) => {
                ctx.metrics.shed.inc();
                shed.store(true, Ordering::Relaxed);
                if !shedding {
                    tracing::warn!(consumer = %ctx.name, capacity = ctx.config.intake_capacity,
                        "intake queue full: shedding messages; their orders are re-driven from the pending index");
                }
                shedding = true;
            }
        }
    }
    Err(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the subscription connection closed",
    )))
}

/// Whether this replica has caught up with its subscription after taking `taken` messages: a
/// short batch emptied the queue; a full one did if the queue is empty now (`queue_empty`), or
/// if the other worker holds the queue (`None`): it waits on an empty one or is taking the last
/// of it.
fn caught_up(taken: usize, batch_size: usize, queue_empty: Option<bool>) -> bool {
    taken < batch_size || queue_empty.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::caught_up;

    #[test]
    fn a_short_batch_means_the_queue_was_emptied() {
        assert!(caught_up(3, 64, Some(false)));
    }

    #[test]
    fn a_full_batch_has_caught_up_only_if_nothing_is_left() {
        assert!(!caught_up(64, 64, Some(false)), "more queued behind it");
        assert!(caught_up(64, 64, Some(true)));
        assert!(
            caught_up(64, 64, None),
            "the other worker holds the queue: it is draining it"
        );
    }
}
