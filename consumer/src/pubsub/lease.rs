//! Pub/Sub leases: every replica hears every order, and `SET lock NX PX` picks the one that
//! applies it. A lease only saves work (the apply is idempotent and keyed on the order's
//! record), so losing one costs a duplicate attempt, never a duplicate effect.

use std::sync::Arc;

use protocol::OrderMessage;
use redis::Value;
use redis_io::scripts;

use crate::apply::{Delivery, Holding};
use crate::context::Context;

/// Takes the lease on each order with one pipelined `SET lock NX PX`; returns the ones we won.
/// Leases only save work (the apply is idempotent), so an error here just drops the batch to
/// recovery.
pub async fn take_leases(
    ctx: &Context,
    messages: Vec<OrderMessage>,
    recovered: Option<&'static str>,
) -> Vec<Delivery> {
    if messages.is_empty() {
        return Vec::new();
    }
    // One random token for the batch: a token only has to tell this holder's lease of one
    // order from any other holder's, and the batch's orders have distinct lock keys.
    let token: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let mut pipe = redis::pipe();
    for m in &messages {
        pipe.cmd("SET")
            .arg(ctx.keys.lock(&m.order_id))
            .arg(&*token)
            .arg("NX")
            .arg("PX")
            .arg(ctx.config.lock_ttl_ms);
    }
    let replies: Vec<Value> = match pipe.query_async(&mut ctx.conn.clone()).await {
        Ok(replies) => replies,
        Err(e) => {
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, orders = messages.len(), error = %e, "could not take leases; recovery will retry");
            return Vec::new();
        }
    };
    let mut won = Vec::with_capacity(messages.len());
    for (message, reply) in messages.into_iter().zip(replies) {
        if matches!(reply, Value::Nil) {
            if recovered.is_none() {
                ctx.metrics.lock_contended.inc();
            }
            tracing::debug!(order_id = %message.order_id, consumer = %ctx.name, outcome = "contended", "another replica holds the lease");
        } else {
            won.push(Delivery {
                message,
                holding: Holding::Lease {
                    token: token.clone(),
                },
                recovered,
            });
        }
    }
    won
}

/// Gives leases back so another replica can take the orders now instead of after the TTL.
pub async fn hand_back(ctx: &Context, deliveries: &[Delivery]) {
    let mut pipe = redis::pipe();
    for d in deliveries {
        if let Holding::Lease { token } = &d.holding {
            pipe.invoke_script(
                scripts::RELEASE
                    .key(ctx.keys.lock(&d.message.order_id))
                    .arg(&**token),
            )
            .ignore();
        }
    }
    if pipe.is_empty() {
        return; // stream entries: they stay in the pending list for reclaim
    }
    if let Err(e) = scripts::query_pipeline::<()>(&mut ctx.conn.clone(), &pipe).await {
        tracing::warn!(consumer = %ctx.name, error = %e, "could not give leases back; they expire after the lock TTL");
    }
}
