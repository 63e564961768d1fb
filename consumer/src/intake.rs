//! From raw payloads to deliveries: parse and validate each message, count and log the bad
//! ones with their reason, and (pubsub) take the lease on the good ones.

use std::sync::Arc;

use protocol::OrderMessage;
use protocol::message::MessageError;
use redis::Value;

use crate::apply::{Delivery, Holding};
use crate::context::Context;
use crate::metrics::ReasonLabel;

/// Parses one payload; a bad one is counted and logged, never fatal.
pub fn parse_or_report(ctx: &Context, payload: &[u8]) -> Result<OrderMessage, MessageError> {
    OrderMessage::parse(payload).inspect_err(|e| {
        ctx.metrics
            .invalid
            .get_or_create(&ReasonLabel { reason: e.kind() })
            .inc();
        tracing::warn!(consumer = %ctx.name, outcome = "invalid", reason = %e,
            payload = %preview(payload), "message refused");
    })
}

/// At most 200 characters of a payload, for logs.
pub fn preview(payload: &[u8]) -> String {
    String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned()
}

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
