//! Streams delivery: one consumer group per channel, this replica a consumer in it. Each entry
//! goes to one replica, so no leases are needed; the apply acknowledges and deletes the entry
//! atomically. Entries idle longer than the lock TTL (their consumer died or stalled) are
//! reclaimed (`reclaim`); after `MAX_DELIVERIES` an entry goes to the dead-letter stream with its
//! reason (`dead_letter`).

use std::time::Duration;

use protocol::keys::CONSUMER_GROUP;
use protocol::message::STREAM_FIELD;
use redis::AsyncCommands;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use redis_io::group::ensure_consumer_group;
use tokio_util::sync::CancellationToken;

use crate::apply::{Delivery, Holding, apply_all};
use crate::context::Context;
use crate::parse::parse_or_report;
use crate::supervise::reconnecting;

mod dead_letter;
mod reclaim;

use dead_letter::{Poisoned, dead_letter};
pub use reclaim::reclaim_periodically;

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
