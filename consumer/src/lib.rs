//! The inventory consumer: one replica of a fleet that applies every accepted order to inventory
//! exactly once. Delivery is at-least-once (Pub/Sub with leases and re-drive, or a Streams
//! consumer group with reclaim); the effect is exactly-once through one idempotent, atomic apply.

pub mod apply;
pub mod backoff;
pub mod config;
pub mod context;
pub mod dead_letters;
pub mod metrics;
pub mod mode_check;
pub mod parse;
pub mod pubsub;
pub mod streams;
pub mod supervise;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use protocol::DeliveryMode;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Command, Config};
use context::Context;

/// Runs the consumer until `shutdown` fires: the HTTP endpoints, the delivery loop and its
/// recovery loop, each of which finishes its current batch before returning, and the check that
/// the order service delivers in this consumer's mode.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let ctx = Context::new(config, &mut registry)?;
    tracing::info!(consumer = %ctx.name, channel = %ctx.keys.channel(), mode = %ctx.config.redis.delivery_mode,
        redis = %ctx.config.redis.endpoint(),
        lock_ttl_ms = ctx.config.lock_ttl_ms, "inventory consumer starting");

    let router = service::ops_routes(ctx.readiness.clone(), Arc::new(registry));
    let http = service::serve(ctx.config.http_addr, router, shutdown.clone());
    let mode_check = mode_check::watch(&ctx, &shutdown);
    let deliver = deliver(&ctx, &shutdown);
    let (http, (), ()) = tokio::join!(http, mode_check, deliver);
    http?;
    tracing::info!(consumer = %ctx.name, "inventory consumer stopped");
    Ok(())
}

async fn deliver(ctx: &Arc<Context>, shutdown: &CancellationToken) {
    match ctx.config.redis.delivery_mode {
        DeliveryMode::Pubsub => {
            tokio::join!(
                pubsub::run(ctx, shutdown),
                pubsub::redrive_periodically(ctx, shutdown)
            );
        }
        DeliveryMode::Streams => {
            tokio::join!(
                streams::run(ctx, shutdown),
                streams::reclaim_periodically(ctx, shutdown)
            );
        }
    }
}
