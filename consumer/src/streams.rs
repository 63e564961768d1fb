//! Streams delivery: one consumer group per channel, this replica a consumer in it. Each entry
//! goes to one replica, so no leases are needed; the apply acknowledges and deletes the entry
//! atomically. Entries idle longer than the lock TTL (their consumer died or stalled) are
//! reclaimed; after `MAX_DELIVERIES` an entry goes to the dead-letter stream with its reason.

use std::collections::HashSet;
use std::time::Duration;

use protocol::OrderMessage;
use protocol::keys::CONSUMER_GROUP;
use protocol::message::STREAM_FIELD;
use redis::AsyncCommands;
use redis::streams::{StreamClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis_io::group::ensure_consumer_group;
use redis_io::scripts::{self, ApplyOutcome};
use tokio_util::sync::CancellationToken;

use crate::apply::{Delivery, Holding, apply_all, apply_batch};
use crate::context::Context;
use crate::intake::{parse_or_report, preview};
use crate::supervise::{periodically, reconnecting};

/// How long one `XREADGROUP` waits for new entries before checking for shutdown.
const BLOCK: Duration = Duration::from_secs(1);

pub async fn run(ctx: &Context, shutdown: &CancellationToken) {
    reconnecting(ctx, shutdown, "stream reading", || session(ctx, shutdown)).await;
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> redis::RedisResult<()> {
    let mut reader = ctx.blocking_connection(BLOCK).await?;
    ensure_consumer_group(&mut reader, &ctx.keys).await?;
    ctx.readiness.set(true);
    tracing::info!(consumer = %ctx.name, stream = %ctx.keys.stream(), group = CONSUMER_GROUP, "reading the stream");

    // What this consumer held before a restart under the same name comes first ("0" and on),
    // then new entries (">").
    let mut cursor = "0".to_owned();
    let stream = ctx.keys.stream();
    loop {
        let mut opts = StreamReadOptions::default()
            .group(CONSUMER_GROUP, &ctx.name)
            .count(ctx.config.batch_size as usize);
        if cursor == ">" {
            opts = opts.block(BLOCK.as_millis() as usize);
        }
        let (keys, ids) = ([&stream], [&cursor]);
        let reply: Option<StreamReadReply> = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            reply = reader.xread_options(&keys, &ids, &opts) => reply?,
        };
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if cursor != ">" {
            match entries.last() {
                Some(last) => cursor = last.id.clone(),
                None => cursor = ">".to_owned(),
            }
        }
        handle_entries(ctx, entries, None, shutdown).await;
    }
}

/// An entry that can never be applied, for the dead-letter stream.
struct Poisoned {
    entry_id: String,
    payload: Vec<u8>,
    reason: String,
    /// The order it carries, when it parsed: its record is marked dead-lettered.
    order: Option<Box<OrderMessage>>,
}

/// Turns an entry into a delivery, or says why it can never be one.
fn to_delivery(
    ctx: &Context,
    entry: StreamId,
    recovered: Option<&'static str>,
) -> Result<Delivery, Poisoned> {
    let payload: Option<Vec<u8>> = entry.get(STREAM_FIELD);
    let Some(payload) = payload else {
        return Err(Poisoned {
            entry_id: entry.id,
            payload: Vec::new(),
            reason: format!("entry has no `{STREAM_FIELD}` field"),
            order: None,
        });
    };
    match parse_or_report(ctx, &payload) {
        Ok(message) => Ok(Delivery {
            message,
            holding: Holding::Entry { entry_id: entry.id },
            recovered,
        }),
        Err(e) => Err(Poisoned {
            entry_id: entry.id,
            payload,
            reason: e.to_string(),
            order: None,
        }),
    }
}

/// Applies the good entries; dead-letters the ones that can never be applied.
async fn handle_entries(
    ctx: &Context,
    entries: Vec<StreamId>,
    recovered: Option<&'static str>,
    shutdown: &CancellationToken,
) {
    let (deliveries, poisoned): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .map(|entry| to_delivery(ctx, entry, recovered))
        .partition(Result::is_ok);
    dead_letter(
        ctx,
        poisoned.into_iter().filter_map(Result::err).collect(),
        None,
    )
    .await;
    apply_all(
        ctx,
        deliveries.into_iter().filter_map(Result::ok).collect(),
        shutdown,
    )
    .await;
}

/// Moves entries to the dead-letter stream with their reason, acknowledging them.
async fn dead_letter(ctx: &Context, entries: Vec<Poisoned>, deliveries: Option<u64>) {
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

/// Every recovery interval, takes over entries idle longer than the lock TTL and removes
/// departed consumers from the group.
pub async fn reclaim_periodically(ctx: &Context, shutdown: &CancellationToken) {
    periodically(ctx, shutdown, "reclaim", || async {
        reclaim(ctx, shutdown).await?;
        forget_departed(ctx).await;
        Ok(())
    })
    .await;
}

async fn reclaim(ctx: &Context, shutdown: &CancellationToken) -> redis::RedisResult<()> {
    let mut conn = ctx.conn.clone();
    let stream = ctx.keys.stream();
    let min_idle = ctx.config.lock_ttl_ms;
    // (entry id, consumer, idle ms, deliveries)
    let idle: Vec<(String, String, u64, usize)> = redis::cmd("XPENDING")
        .arg(&stream)
        .arg(CONSUMER_GROUP)
        .arg("IDLE")
        .arg(min_idle)
        .arg("-")
        .arg("+")
        .arg(ctx.config.batch_size)
        .query_async(&mut conn)
        .await?;
    // Applied entries are deleted, so what the stream holds is what is not done yet.
    let pending: i64 = conn.xlen(&stream).await?;
    ctx.metrics.pending_orders.set(pending);
    if idle.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = idle.iter().map(|(id, ..)| id.as_str()).collect();
    // XCLAIM re-checks the idle time, so two replicas reclaiming at once cannot both win.
    let claimed: StreamClaimReply = conn
        .xclaim(&stream, CONSUMER_GROUP, &ctx.name, min_idle, &ids)
        .await?;
    tracing::info!(consumer = %ctx.name, entries = claimed.ids.len(), "reclaimed idle entries");
    let max = ctx.config.max_deliveries as usize;
    let exhausted: HashSet<&str> = idle
        .iter()
        .filter(|(_, _, _, deliveries)| *deliveries >= max)
        .map(|(id, ..)| id.as_str())
        .collect();
    let (last, retry): (Vec<_>, Vec<_>) = claimed
        .ids
        .into_iter()
        .partition(|entry| exhausted.contains(entry.id.as_str()));
    handle_entries(ctx, retry, Some("reclaim"), shutdown).await;
    last_chance(ctx, last, max).await;
    Ok(())
}

/// Removes consumers that are gone (nothing pending, idle for long) from the group. Only
/// housekeeping: a failure (an ACL without XINFO, say) is logged and never stops a reclaim.
async fn forget_departed(ctx: &Context) {
    let removed: redis::RedisResult<Vec<String>> = scripts::FORGET_CONSUMERS
        .key(ctx.keys.stream())
        .arg(CONSUMER_GROUP)
        .arg(ctx.config.departed_after().as_millis() as u64)
        .arg(&ctx.name)
        .invoke_async(&mut ctx.conn.clone())
        .await;
    match removed {
        Ok(removed) => {
            for name in removed {
                tracing::info!(consumer = %ctx.name, departed = %name, "removed a departed consumer from the group");
            }
        }
        Err(e) => {
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, error = %e, "could not remove departed consumers from the group");
        }
    }
}

/// Entries delivered `max` times get one more try each, alone. Only Redis refusing that entry's
/// apply sends it to the dead-letter stream: a failed call says nothing about the entry (a good
/// order must never be dead-lettered because the network flapped), so it stays pending.
async fn last_chance(ctx: &Context, entries: Vec<StreamId>, max: usize) {
    let mut poisoned = Vec::new();
    for entry in entries {
        // The dead-letter stream keeps the payload as it arrived.
        let (entry_id, payload) = (
            entry.id.clone(),
            entry.get(STREAM_FIELD).unwrap_or_default(),
        );
        match to_delivery(ctx, entry, Some("reclaim")) {
            Err(p) => poisoned.push(p),
            // `None` (the call itself failed, e.g. the connection dropped) says nothing about
            // the entry: it stays pending.
            Ok(delivery) => {
                if let Some([ApplyOutcome::Failed { error }]) =
                    apply_batch(ctx, std::slice::from_ref(&delivery))
                        .await
                        .as_deref()
                {
                    poisoned.push(Poisoned {
                        entry_id,
                        payload,
                        reason: format!("apply failed after {max} deliveries: {error}"),
                        order: Some(Box::new(delivery.message)),
                    });
                }
            }
        }
    }
    dead_letter(ctx, poisoned, Some(max as u64)).await;
}
