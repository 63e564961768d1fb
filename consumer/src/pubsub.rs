//! Pub/Sub delivery, the starting design repaired: every replica hears every order and the one
//! that wins the lease applies it. A dropped subscription is re-established with backoff
//! (readiness is false meanwhile) and followed by a full re-drive, because Pub/Sub never replays
//! what was published while nobody listened.

use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::apply::apply_all;
use crate::context::Context;
use crate::intake::{parse_or_report, take_leases};
use crate::recovery;
use crate::supervise::{periodically, reconnecting};

pub async fn run(ctx: &Context, shutdown: &CancellationToken) {
    reconnecting(ctx, shutdown, "subscription", || session(ctx, shutdown)).await;
}

/// One subscription, until shutdown (`Ok`) or until the connection fails (`Err`).
async fn session(ctx: &Context, shutdown: &CancellationToken) -> redis::RedisResult<()> {
    let mut pubsub = ctx.client.get_async_pubsub().await?;
    pubsub.subscribe(ctx.keys.channel().as_str()).await?;
    tracing::info!(consumer = %ctx.name, channel = %ctx.keys.channel(), "subscribed");
    // Whatever was published before we listened is only in the pending index.
    recovery::redrive(ctx, None, shutdown).await?;
    ctx.readiness.set(true);

    let batch_size = ctx.config.batch_size as usize;
    let mut messages = pubsub.on_message();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            msg = messages.next() => msg,
        };
        let Some(first) = first else {
            return Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the subscription connection closed",
            )));
        };
        // Take whatever else has already arrived, so one round trip serves many orders.
        let mut payloads = vec![first.get_payload_bytes().to_vec()];
        while payloads.len() < batch_size {
            match messages.next().now_or_never() {
                Some(Some(msg)) => payloads.push(msg.get_payload_bytes().to_vec()),
                _ => break,
            }
        }
        let orders = payloads
            .iter()
            .filter_map(|p| parse_or_report(ctx, p).ok())
            .collect();
        let won = take_leases(ctx, orders, None).await;
        apply_all(ctx, won, shutdown).await;
    }
}

/// Re-drives orders whose holder died (their lease has run out) every recovery interval.
pub async fn redrive_periodically(ctx: &Context, shutdown: &CancellationToken) {
    let lease = ctx.config.lock_ttl();
    periodically(ctx, shutdown, "re-drive", || {
        recovery::redrive(ctx, Some(lease), shutdown)
    })
    .await;
}
