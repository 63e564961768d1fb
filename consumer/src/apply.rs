//! Applying orders, the same way in both delivery modes: a batch of orders in one script call
//! (each order atomic on its own), then the accounting of how each ended (metrics and one log line per
//! order carrying `order_id`, `consumer` and `outcome`). In pubsub mode the orders whose apply
//! Redis refused are then counted fleet-wide and dead-lettered at `MAX_DELIVERIES` (streams mode
//! counts an entry's deliveries instead, in `streams/reclaim.rs`).

use std::sync::Arc;
use std::time::Instant;

use protocol::OrderMessage;
use protocol::keys::CONSUMER_GROUP;
use redis_io::scripts::{self, ApplyItem, ApplyOutcome, RefusalOutcome};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::{ReasonLabel, ViaLabel};
use crate::pubsub::lease;

/// How an order reached this consumer, and so how its apply settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Pub/Sub: we hold the lease with this token (the apply leaves it to expire, see apply.lua).
    Lease { token: Arc<str> },
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
    fn apply_item(&self) -> ApplyItem<'_> {
        let entry_id = match &self.holding {
            Holding::Lease { .. } => None,
            Holding::Entry { entry_id } => Some(entry_id.as_str()),
        };
        ApplyItem {
            message: &self.message,
            entry_id,
        }
    }
}

/// Applies `deliveries`: all in one round trip, or one by one after the configured delay (a
/// drill for slow replicas). On shutdown, leases not yet applied are given back at once;
/// stream entries stay in the pending list for reclaim.
pub async fn apply_all(ctx: &Context, deliveries: Vec<Delivery>, shutdown: &CancellationToken) {
    let Some(delay) = ctx.config.apply_delay() else {
        apply_batch(ctx, &deliveries).await; // failures are logged; recovery retries
        return;
    };
    for (i, delivery) in deliveries.iter().enumerate() {
        let cancelled = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(delay) => false,
        };
        if cancelled {
            lease::hand_back(ctx, &deliveries[i..]).await;
            return;
        }
        apply_batch(ctx, std::slice::from_ref(delivery)).await;
    }
}

/// Applies `deliveries` in one script call and accounts for each. `None` when the outcome is
/// unknown (the call failed: logged and counted here); the orders then stay pending (or in the
/// stream's pending list) and recovery applies them, idempotently, once the lease or idle time
/// runs out.
pub async fn apply_batch(ctx: &Context, deliveries: &[Delivery]) -> Option<Vec<ApplyOutcome>> {
    if deliveries.is_empty() {
        return Some(Vec::new());
    }
    let items: Vec<ApplyItem<'_>> = deliveries.iter().map(Delivery::apply_item).collect();
    let from_stream = items.iter().any(|i| i.entry_id.is_some());
    let group = from_stream.then_some(CONSUMER_GROUP);
    let invocation =
        scripts::apply_invocation(&ctx.keys, &ctx.config.settler(&ctx.name), group, &items);
    let started = Instant::now();
    let reply: redis::RedisResult<redis::Value> =
        invocation.invoke_async(&mut ctx.conn.clone()).await;
    ctx.metrics
        .apply_seconds
        .observe(started.elapsed().as_secs_f64());
    let outcomes = reply.map_err(|e| e.to_string()).and_then(|reply| {
        scripts::parse_apply_reply(reply, deliveries.len()).map_err(|e| e.to_string())
    });
    match outcomes {
        Ok(outcomes) => {
            for (d, outcome) in deliveries.iter().zip(&outcomes) {
                account(ctx, d, outcome);
            }
            count_refusals(ctx, &refused_leases(deliveries, &outcomes)).await;
            Some(outcomes)
        }
        Err(error) => {
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, orders = deliveries.len(), error, "apply failed; recovery will retry");
            None
        }
    }
}

fn account(ctx: &Context, d: &Delivery, outcome: &ApplyOutcome) {
    let m = &ctx.metrics;
    let (order_id, event_id, consumer) = (
        d.message.order_id.as_str(),
        d.message.id.as_str(),
        ctx.name.as_str(),
    );
    let recovered = d.recovered.unwrap_or("");
    match outcome {
        ApplyOutcome::Applied { .. } => {
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
        ApplyOutcome::Rejected { reason, .. } => {
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
        ApplyOutcome::Duplicate { status, by } => {
            m.duplicates.inc();
            tracing::debug!(order_id, event_id, consumer, outcome = "duplicate", first_outcome = %status, first_consumer = %by, "order already done");
        }
        ApplyOutcome::Conflict { owner } => {
            m.invalid
                .get_or_create(&ReasonLabel {
                    reason: "order_id_conflict",
                })
                .inc();
            let dead_lettered = matches!(d.holding, Holding::Entry { .. });
            if dead_lettered {
                m.dead_lettered.inc();
            }
            tracing::warn!(
                order_id,
                event_id,
                consumer,
                outcome = "conflict",
                owner,
                dead_lettered,
                "orderId already belongs to another event: not applied"
            );
        }
        ApplyOutcome::Failed { error } => {
            m.redis_errors.inc();
            tracing::error!(
                order_id,
                event_id,
                consumer,
                outcome = "error",
                error,
                "Redis refused the apply; nothing changed"
            );
        }
    }
    if let (Some(via), ApplyOutcome::Applied { .. } | ApplyOutcome::Rejected { .. }) =
        (d.recovered, outcome)
    {
        m.recovered.get_or_create(&ViaLabel { via }).inc();
    }
}

/// Pub/Sub: the orders of a batch whose apply Redis refused. Only these count towards
/// dead-lettering: a call that failed as a whole says nothing about its orders.
fn refused_leases<'a>(
    deliveries: &'a [Delivery],
    outcomes: &'a [ApplyOutcome],
) -> Vec<scripts::Refusal<'a>> {
    deliveries
        .iter()
        .zip(outcomes)
        .filter_map(|(d, outcome)| match (&d.holding, outcome) {
            (Holding::Lease { .. }, ApplyOutcome::Failed { error }) => Some(scripts::Refusal {
                message: &d.message,
                error,
            }),
            _ => None,
        })
        .collect()
}

/// Pub/Sub: counts refused applies in Redis, fleet-wide, in one script call; the orders refused
/// `MAX_DELIVERIES` times are dead-lettered by it. If the count fails, the orders stay pending
/// and their next refusal is counted instead.
async fn count_refusals(ctx: &Context, refusals: &[scripts::Refusal<'_>]) {
    if refusals.is_empty() {
        return;
    }
    let invocation = scripts::refused_invocation(
        &ctx.keys,
        &ctx.config.settler(&ctx.name),
        ctx.config.max_deliveries,
        refusals,
    );
    let reply: redis::RedisResult<redis::Value> =
        invocation.invoke_async(&mut ctx.conn.clone()).await;
    let outcomes = reply.map_err(|e| e.to_string()).and_then(|reply| {
        scripts::parse_refused_reply(reply, refusals.len()).map_err(|e| e.to_string())
    });
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, orders = refusals.len(), error, "could not count refused applies; the orders stay pending");
            return;
        }
    };
    for (refusal, outcome) in refusals.iter().zip(outcomes) {
        let order_id = refusal.message.order_id.as_str();
        let consumer = ctx.name.as_str();
        match outcome {
            RefusalOutcome::DeadLettered { count } => {
                ctx.metrics.dead_lettered.inc();
                tracing::warn!(
                    order_id,
                    consumer,
                    outcome = "dead-lettered",
                    refusals = count,
                    reason = refusal.error,
                    "order moved to the dead-letter stream"
                );
            }
            RefusalOutcome::Counted { count } => {
                tracing::info!(
                    order_id,
                    consumer,
                    refusals = count,
                    max = ctx.config.max_deliveries,
                    "refused apply counted; the order is re-driven"
                );
            }
            RefusalOutcome::Done => {}
            RefusalOutcome::Failed { error } => {
                ctx.metrics.redis_errors.inc();
                tracing::warn!(
                    order_id,
                    consumer,
                    error,
                    "could not count a refused apply; the order stays pending"
                );
            }
        }
    }
}
