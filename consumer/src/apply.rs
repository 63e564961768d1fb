//! Applying orders, the same way in both delivery modes: a batch of apply scripts in one
//! pipelined round trip, then the accounting of how each ended (metrics and one log line per
//! order carrying `order_id`, `consumer` and `outcome`).

use std::time::Instant;

use protocol::OrderMessage;
use protocol::keys::CONSUMER_GROUP;
use protocol::scripts::{self, ApplyOutcome, StreamEntry, UnexpectedReply};
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::ViaLabel;

/// How an order reached this consumer, and so how its apply settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Pub/Sub: we hold the lease with this token (the apply leaves it to expire, see apply.lua).
    Lease { token: String },
    /// Streams: the entry is in our pending list.
    Entry { entry_id: String },
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: OrderMessage,
    pub holding: Holding,
    /// `Some("redrive")` or `Some("reclaim")` when recovered from a dead or absent holder.
    pub recovered: Option<&'static str>,
}

impl Delivery {
    fn stream_entry(&self) -> Option<StreamEntry<'_>> {
        match &self.holding {
            Holding::Lease { .. } => None,
            Holding::Entry { entry_id } => Some(StreamEntry {
                group: CONSUMER_GROUP,
                entry_id,
            }),
        }
    }
}

/// Applies `deliveries`: all in one round trip, or one by one after the configured delay (a
/// drill for slow replicas). On shutdown, leases not yet applied are given back at once;
/// stream entries stay in the pending list for reclaim.
pub async fn apply_all(ctx: &Context, deliveries: Vec<Delivery>, shutdown: &CancellationToken) {
    let Some(delay) = ctx.config.apply_delay() else {
        let _ = apply_batch(ctx, &deliveries).await; // failures are logged; recovery retries
        return;
    };
    for (i, delivery) in deliveries.iter().enumerate() {
        let cancelled = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(delay) => false,
        };
        if cancelled {
            hand_back(ctx, &deliveries[i..]).await;
            return;
        }
        let _ = apply_batch(ctx, std::slice::from_ref(delivery)).await;
    }
}

/// Applies `deliveries` in one round trip and accounts for each. On error the outcome is
/// unknown (logged and counted here, returned for callers that must tell kinds of errors apart).
pub async fn apply_batch(ctx: &Context, deliveries: &[Delivery]) -> redis::RedisResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for d in deliveries {
        let invocation = scripts::apply_invocation(
            &ctx.keys,
            &d.message,
            &ctx.name,
            ctx.retention_ms(),
            d.stream_entry(),
        );
        pipe.invoke_script(&invocation);
    }
    let started = Instant::now();
    let replies: Result<Vec<Value>, _> =
        scripts::query_pipeline(&mut ctx.conn.clone(), &pipe).await;
    ctx.metrics
        .apply_seconds
        .observe(started.elapsed().as_secs_f64());
    match replies {
        Ok(replies) => {
            for (d, reply) in deliveries.iter().zip(replies) {
                account(ctx, d, scripts::parse_apply_reply(reply));
            }
            Ok(())
        }
        Err(e) => {
            // The outcome is unknown: the orders stay pending (or in the stream's pending list)
            // and recovery applies them, idempotently, once the lease or idle time runs out.
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, orders = deliveries.len(), error = %e, "apply failed; recovery will retry");
            Err(e)
        }
    }
}

/// A failure that says nothing about the orders themselves: the connection dropped or timed
/// out, so the orders must stay pending whatever their delivery count.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

fn account(ctx: &Context, d: &Delivery, outcome: Result<ApplyOutcome, UnexpectedReply>) {
    let m = &ctx.metrics;
    let (order_id, event_id, consumer) = (
        d.message.order_id.as_str(),
        d.message.id.as_str(),
        ctx.name.as_str(),
    );
    let recovered = d.recovered.unwrap_or("");
    match &outcome {
        Ok(ApplyOutcome::Applied { .. }) => {
            m.applied.inc();
            tracing::info!(
                order_id,
                event_id,
                consumer,
                outcome = "applied",
                recovered,
                "order applied"
            );
        }
        Ok(ApplyOutcome::Rejected { reason, .. }) => {
            m.rejected.inc();
            tracing::info!(
                order_id,
                event_id,
                consumer,
                outcome = "rejected",
                reason,
                recovered,
                "order rejected"
            );
        }
        Ok(ApplyOutcome::Duplicate { status, by }) => {
            m.duplicates.inc();
            tracing::debug!(order_id, event_id, consumer, outcome = "duplicate", first_outcome = %status, first_consumer = %by, "order already done");
        }
        Err(e) => {
            m.redis_errors.inc();
            tracing::error!(order_id, event_id, consumer, error = %e, "apply gave an unexpected reply");
        }
    }
    if let (Some(via), Ok(ApplyOutcome::Applied { .. } | ApplyOutcome::Rejected { .. })) =
        (d.recovered, &outcome)
    {
        m.recovered.get_or_create(&ViaLabel { via }).inc();
    }
}

/// Gives leases back so another replica can take the orders now instead of after the TTL.
async fn hand_back(ctx: &Context, deliveries: &[Delivery]) {
    let mut pipe = redis::pipe();
    for d in deliveries {
        if let Holding::Lease { token } = &d.holding {
            pipe.invoke_script(
                scripts::RELEASE
                    .key(ctx.keys.lock(&d.message.id))
                    .arg(token),
            )
            .ignore();
        }
    }
    if let Err(e) = scripts::query_pipeline::<()>(&mut ctx.conn.clone(), &pipe).await {
        tracing::warn!(consumer = %ctx.name, error = %e, "could not give leases back; they expire after the lock TTL");
    }
}
