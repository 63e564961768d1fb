//! The two loop shapes both delivery modes share: a session re-established with backoff until
//! shutdown, and a recovery task run every recovery interval while the consumer is ready.

use std::future::Future;

use redis_io::floor as redis_floor;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::context::Context;

/// Runs `session` until shutdown. A session returns `Ok` on shutdown and `Err` when Redis
/// fails it; it sets readiness once it is working, which also resets the backoff.
pub async fn reconnecting<F, Fut>(
    ctx: &Context,
    shutdown: &CancellationToken,
    what: &str,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<()>>,
{
    let mut backoff = Backoff::default();
    let mut first = true;
    while !shutdown.is_cancelled() {
        if !first {
            ctx.metrics.reconnects.inc();
        }
        first = false;
        let result = match check_redis(ctx).await {
            Ok(()) => session().await,
            Err(e) => Err(e),
        };
        if ctx.readiness.get() {
            backoff.reset();
        }
        ctx.readiness.set(false);
        if let Err(e) = result {
            ctx.metrics.redis_errors.inc();
            let delay = backoff.next_delay();
            let error = e.to_string();
            tracing::warn!(consumer = %ctx.name, redis = %ctx.config.redis.endpoint(), error,
                hint = ctx.config.redis.hint(&error), retry_in_ms = delay.as_millis() as u64, "{what} lost");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Checks the server against the version floor before every session: a failover or a restore
/// can land on another server. Below the floor, readiness is held with the reason and the
/// session is not started (the backoff paces the re-checks, so an upgrade is picked up).
async fn check_redis(ctx: &Context) -> redis::RedisResult<()> {
    let server = redis_floor::check(&mut ctx.conn.clone(), &ctx.readiness).await?;
    tracing::info!(consumer = %ctx.name, redis = %ctx.config.redis.endpoint(), %server, "connected to Redis");
    Ok(())
}

/// Runs `task` every recovery interval until shutdown, skipping ticks while the consumer is not
/// ready (its session recovers everything when it comes back).
pub async fn periodically<F, Fut>(
    ctx: &Context,
    shutdown: &CancellationToken,
    what: &str,
    mut task: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<()>>,
{
    let mut tick = tokio::time::interval(ctx.config.recovery_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !ctx.readiness.get() {
            continue;
        }
        if let Err(e) = task().await {
            ctx.metrics.redis_errors.inc();
            tracing::warn!(consumer = %ctx.name, error = %e, "{what} failed; the next tick retries");
        }
    }
}
