//! From raw payloads to orders, the same in both delivery modes: parse and validate each
//! message, count and log the bad ones with their reason.

use protocol::OrderMessage;
use protocol::message::MessageError;

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
