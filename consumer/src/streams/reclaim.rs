//! Streams recovery: entries idle longer than the lock TTL (their consumer died or stalled) are
//! claimed by a live consumer and tried again; after `MAX_DELIVERIES` each gets one last try
//! alone, and only Redis refusing it sends it to the dead-letter stream. Departed consumers are
//! removed from the group.

use std::collections::HashSet;

use protocol::keys::CONSUMER_GROUP;
use protocol::message::STREAM_FIELD;
use redis::AsyncCommands;
use redis::streams::{StreamClaimReply, StreamId};
use redis_io::scripts::{self, ApplyOutcome};
use tokio_util::sync::CancellationToken;

use super::dead_letter::{Poisoned, dead_letter};
use super::{handle_entries, to_delivery};
use crate::apply::apply_batch;
use crate::context::Context;
use crate::supervise::periodically;

/// One entry of `XPENDING ... IDLE`: (entry id, consumer, idle ms, deliveries).
type IdleEntry = (String, String, u64, usize);

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
    let idle: Vec<IdleEntry> = redis::cmd("XPENDING")
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
    let (last, retry) = split_exhausted(&idle, claimed.ids, max);
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

/// Splits the claimed entries into those delivered `max` times or more (as `XPENDING` counted
/// before the claim; they get their last chance) and the rest (tried again with the others).
fn split_exhausted(
    idle: &[IdleEntry],
    claimed: Vec<StreamId>,
    max: usize,
) -> (Vec<StreamId>, Vec<StreamId>) {
    let exhausted: HashSet<&str> = idle
        .iter()
        .filter(|(_, _, _, deliveries)| *deliveries >= max)
        .map(|(id, ..)| id.as_str())
        .collect();
    claimed
        .into_iter()
        .partition(|entry| exhausted.contains(entry.id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(id: &str, deliveries: usize) -> IdleEntry {
        (
            id.to_owned(),
            "gone-consumer".to_owned(),
            60_000,
            deliveries,
        )
    }

    fn entry(id: &str) -> StreamId {
        StreamId {
            id: id.to_owned(),
            ..StreamId::default()
        }
    }

    fn ids(entries: &[StreamId]) -> Vec<&str> {
        entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn entries_delivered_max_times_get_their_last_chance_the_rest_are_retried() {
        let pending = [idle("1-0", 4), idle("2-0", 5), idle("3-0", 6)];
        let claimed = vec![entry("1-0"), entry("2-0"), entry("3-0")];
        let (last, retry) = split_exhausted(&pending, claimed, 5);
        assert_eq!(ids(&last), ["2-0", "3-0"], "at and past the limit");
        assert_eq!(ids(&retry), ["1-0"]);
    }

    #[test]
    fn an_entry_another_replica_claimed_first_is_in_neither_list() {
        // XCLAIM re-checks the idle time: what another replica took is not in our claim.
        let pending = [idle("1-0", 9), idle("2-0", 1)];
        let (last, retry) = split_exhausted(&pending, vec![entry("2-0")], 5);
        assert!(last.is_empty());
        assert_eq!(ids(&retry), ["2-0"]);
    }

    #[test]
    fn a_claimed_entry_missing_from_the_pending_reply_is_retried_not_dead_lettered() {
        let (last, retry) = split_exhausted(&[], vec![entry("7-0")], 1);
        assert!(last.is_empty(), "no delivery count, no last chance");
        assert_eq!(ids(&retry), ["7-0"]);
    }
}
