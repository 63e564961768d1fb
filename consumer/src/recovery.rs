//! Pub/Sub recovery (holes 3, 4, 7, 8): every accepted order sits in the pending index until its
//! apply removes it. Orders there longer than the lock TTL lost their holder (it crashed, or no
//! replica was subscribed), so any live replica takes the lease and applies them.

use std::collections::HashSet;
use std::time::Duration;

use protocol::order::OrderId;
use protocol::record;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::apply::apply_all;
use crate::context::Context;
use crate::intake::{parse_or_report, take_leases};

/// Re-drives pending orders accepted at least `min_age` ago (all of them when `None`), a page
/// at a time, until a page brings nothing new.
pub async fn redrive(
    ctx: &Context,
    min_age: Option<Duration>,
    shutdown: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut conn = ctx.conn.clone();
    let pending_key = ctx.keys.pending();
    let max_score = match min_age {
        // Accept times come from Redis' clock, so compare with Redis' clock too.
        Some(age) => {
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
            (secs * 1000 + micros / 1000)
                .saturating_sub(age.as_millis() as u64)
                .to_string()
        }
        None => "+inf".to_owned(),
    };
    let mut seen = HashSet::new();
    let mut min_score = "-inf".to_owned();
    while !shutdown.is_cancelled() {
        let page: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&pending_key)
            .arg(&min_score)
            .arg(&max_score)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(ctx.config.batch_size)
            .query_async(&mut conn)
            .await?;
        let Some((_, last_score)) = page.last() else {
            break;
        };
        // Scores repeat within a millisecond, so the next page starts at the last score and
        // skips what this pass has seen.
        min_score = last_score.to_string();
        let fresh: Vec<String> = page
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| seen.insert(id.clone()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        redrive_ids(ctx, &fresh, shutdown).await?;
    }
    let pending: i64 = conn.zcard(&pending_key).await?;
    ctx.metrics.pending_orders.set(pending);
    Ok(())
}

async fn redrive_ids(
    ctx: &Context,
    ids: &[String],
    shutdown: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut conn = ctx.conn.clone();
    let mut stale: Vec<&str> = Vec::new();
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        match OrderId::parse("pending orderId", id) {
            Ok(order) => orders.push(order),
            Err(_) => stale.push(id),
        }
    }
    let mut pipe = redis::pipe();
    for order in &orders {
        pipe.hget(ctx.keys.order(order), record::field::MESSAGE);
    }
    let payloads: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
    let mut messages = Vec::with_capacity(orders.len());
    for (order, payload) in orders.iter().zip(payloads) {
        match payload.map(|p| parse_or_report(ctx, &p)) {
            Some(Ok(message)) => messages.push(message),
            // The record is gone (deleted by hand; records only expire once done) or cannot be
            // read: no replica can ever apply it, so keeping it pending would only re-drive it
            // forever.
            None | Some(Err(_)) => {
                tracing::warn!(consumer = %ctx.name, order_id = %order, "pending order has no readable record; dropped from the pending index");
                stale.push(order.as_str());
            }
        }
    }
    if !stale.is_empty() {
        let _: i64 = conn.zrem(ctx.keys.pending(), &stale).await?;
    }
    let won = take_leases(ctx, messages, Some("redrive")).await;
    apply_all(ctx, won, shutdown).await;
    Ok(())
}
