//! Pub/Sub re-drive: every accepted order sits in the pending index until its
//! apply removes it. Orders there longer than the lock TTL lost their holder (it crashed, or no
//! replica was subscribed), so any live replica takes the lease and applies them.

use std::time::Duration;

use protocol::order::OrderId;
use protocol::record;
use redis::{AsyncCommands, Value};
use redis_io::conn::RedisConn;
use tokio_util::sync::CancellationToken;

use crate::apply::apply_all;
use crate::context::Context;
use crate::metrics::ReasonLabel;
use crate::parse::parse_or_report;
use crate::pubsub::lease::take_leases;

/// Re-drives pending orders accepted at least `min_age` ago (all of them when `None`), a page
/// at a time, each page starting strictly after the scores the one before covered.
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
    let batch_size = ctx.config.batch_size as usize;
    let mut min_score = "-inf".to_owned();
    while !shutdown.is_cancelled() {
        let page = range(
            &mut conn,
            &pending_key,
            &min_score,
            &max_score,
            Some(batch_size),
        )
        .await?;
        match split_page(page, batch_size) {
            Page::Last(ids) => {
                redrive_ids(ctx, &ids, shutdown).await?;
                break;
            }
            Page::Full { below, tie } => {
                redrive_ids(ctx, &below, shutdown).await?;
                // The whole tie group at once, not in LIMIT-offset pages: applies remove orders
                // from the index as we go, so an offset would skip. Its size is what Redis
                // accepted within one millisecond: one group commit (at most 128 orders) or a
                // few.
                let tie_bound = score_bound(tie);
                let group = range(&mut conn, &pending_key, &tie_bound, &tie_bound, None).await?;
                let group: Vec<String> = group.into_iter().map(|(id, _)| id).collect();
                for chunk in group.chunks(batch_size) {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    redrive_ids(ctx, chunk, shutdown).await?;
                }
                min_score = format!("({tie_bound}");
            }
        }
    }
    let pending: i64 = conn.zcard(&pending_key).await?;
    ctx.metrics.pending_orders.set(pending);
    Ok(())
}

/// `ZRANGEBYSCORE key min max WITHSCORES [LIMIT 0 limit]`.
async fn range(
    conn: &mut RedisConn,
    key: &str,
    min: &str,
    max: &str,
    limit: Option<usize>,
) -> redis::RedisResult<Vec<(String, f64)>> {
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(key).arg(min).arg(max).arg("WITHSCORES");
    if let Some(limit) = limit {
        cmd.arg("LIMIT").arg(0).arg(limit);
    }
    cmd.query_async(conn).await
}

/// What one page of the pending index (ascending by score) leaves to read.
#[derive(Debug, PartialEq)]
enum Page {
    /// A short page: nothing lies beyond it, so its orders are the rest.
    Last(Vec<String>),
    /// A full page: everything scored below its last score is in it (`below`), but orders at
    /// that score (`tie`, accept times repeat: a group commit gives a whole batch one) may go on
    /// past the limit. Read the whole tie group next, then go on strictly after `tie`: a cursor
    /// that starts *at* `tie` would read the same full page again and stall.
    Full { below: Vec<String>, tie: f64 },
}

fn split_page(page: Vec<(String, f64)>, limit: usize) -> Page {
    match page.last() {
        Some(&(_, tie)) if page.len() >= limit => Page::Full {
            below: page
                .into_iter()
                .filter(|&(_, score)| score < tie)
                .map(|(id, _)| id)
                .collect(),
            tie,
        },
        _ => Page::Last(page.into_iter().map(|(id, _)| id).collect()),
    }
}

/// A score as Redis reads it back. Scores are whole milliseconds, which an `f64` holds exactly
/// and prints without an exponent.
fn score_bound(score: f64) -> String {
    score.to_string()
}

async fn redrive_ids(
    ctx: &Context,
    ids: &[String],
    shutdown: &CancellationToken,
) -> redis::RedisResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut conn = ctx.conn.clone();
    let mut stale: Vec<&str> = Vec::new();
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        match OrderId::parse("pending orderId", id) {
            Ok(order) => orders.push(order),
            Err(_) => stale.push(id),
        }
    }
    // Each reply on its own: one record Redis cannot read must not stop the re-drive of every
    // order behind it (a failed session re-drive would keep the replica unready for good).
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for order in &orders {
        pipe.hget(ctx.keys.order(order), record::field::MESSAGE);
    }
    let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
    let mut messages = Vec::with_capacity(orders.len());
    for (order, reply) in orders.iter().zip(replies) {
        let unreadable = match reply {
            Value::BulkString(payload) => match parse_or_report(ctx, &payload) {
                Ok(message) => {
                    messages.push(message);
                    continue;
                }
                Err(e) => e.to_string(),
            },
            // Deleted by hand: records only expire once done.
            Value::Nil => "the record is gone".to_owned(),
            // Only a record of the wrong type is the record's fault; any other refusal (an ACL
            // without HGET, a server loading) says nothing about the order: retry later.
            Value::ServerError(e) if e.code() == "WRONGTYPE" => {
                format!("the record is not a hash: {e}")
            }
            Value::ServerError(e) => return Err(e.into()),
            other => format!("unexpected reply {other:?}"),
        };
        // No replica can ever apply it, so keeping it pending would only re-drive it forever.
        // Counted with the invalid messages, so an alert on those sees it too.
        ctx.metrics
            .invalid
            .get_or_create(&ReasonLabel {
                reason: "unreadable_record",
            })
            .inc();
        tracing::warn!(consumer = %ctx.name, order_id = %order, outcome = "dropped", reason = unreadable,
            "pending order has no readable record; dropped from the pending index");
        stale.push(order.as_str());
    }
    if !stale.is_empty() {
        let _: i64 = conn.zrem(ctx.keys.pending(), &stale).await?;
    }
    let won = take_leases(ctx, messages, Some("redrive")).await;
    apply_all(ctx, won, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(entries: &[(&str, f64)]) -> Vec<(String, f64)> {
        entries.iter().map(|&(id, s)| (id.to_owned(), s)).collect()
    }

    #[test]
    fn a_short_page_is_the_rest() {
        assert_eq!(
            split_page(page(&[("a", 1.0), ("b", 1.0)]), 3),
            Page::Last(vec!["a".into(), "b".into()])
        );
        assert_eq!(split_page(page(&[]), 3), Page::Last(vec![]));
    }

    #[test]
    fn a_full_page_leaves_its_last_score_to_the_tie_group() {
        assert_eq!(
            split_page(page(&[("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 3.0)]), 4),
            Page::Full {
                below: vec!["a".into(), "b".into(), "c".into()],
                tie: 3.0
            }
        );
    }

    /// The case that stalled: a group commit bigger than the page gives the page one score.
    #[test]
    fn a_full_page_of_one_score_is_all_tie_group() {
        let one_score = page(&[("a", 5.0), ("b", 5.0), ("c", 5.0)]);
        assert_eq!(
            split_page(one_score, 3),
            Page::Full {
                below: vec![],
                tie: 5.0
            }
        );
    }

    #[test]
    fn scores_print_as_whole_milliseconds() {
        // An accept time today, and the largest whole number an f64 holds exactly.
        assert_eq!(score_bound(1_754_000_000_123.0), "1754000000123");
        assert_eq!(score_bound(9_007_199_254_740_992.0), "9007199254740992");
    }
}
