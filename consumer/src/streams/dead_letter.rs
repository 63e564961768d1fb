//! Streams: entries that can never be applied go to the dead-letter stream with their reason,
//! acknowledged in the same atomic step, so they are never both lost and acknowledged and
//! never block the entries behind them.

use protocol::OrderMessage;
use redis_io::scripts;

use crate::context::Context;
use crate::parse::preview;

/// An entry that can never be applied, for the dead-letter stream.
pub struct Poisoned {
    pub entry_id: String,
    pub payload: Vec<u8>,
    pub reason: String,
    /// The order it carries, when it parsed: its record is marked dead-lettered.
    pub order: Option<Box<OrderMessage>>,
}

/// Moves entries to the dead-letter stream with their reason, acknowledging them.
pub async fn dead_letter(ctx: &Context, entries: Vec<Poisoned>, deliveries: Option<u64>) {
    if entries.is_empty() {
        return;
    }
    let settler = ctx.config.settler(&ctx.name);
    let mut pipe = redis::pipe();
    for p in &entries {
        pipe.invoke_script(&scripts::dead_letter_entry_invocation(
            &ctx.keys,
            &settler,
            &p.entry_id,
            &p.payload,
            &p.reason,
            deliveries,
            p.order.as_deref(),
        ))
        .ignore();
    }
    match scripts::query_pipeline::<()>(&mut ctx.conn.clone(), &pipe).await {
        Ok(()) => {
            for p in &entries {
                ctx.metrics.dead_lettered.inc();
                let order_id = p.order.as_ref().map(|m| m.order_id.as_str()).unwrap_or("");
                tracing::warn!(consumer = %ctx.name, entry_id = p.entry_id, order_id, outcome = "dead-lettered",
                    reason = p.reason, payload = %preview(&p.payload), "entry moved to the dead-letter stream");
            }
        }
        Err(e) => {
            // The entries stay pending; reclaim brings them back and tries again.
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, error = %e, "dead-lettering failed; reclaim will retry");
        }
    }
}
