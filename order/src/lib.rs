//! The order service: validates orders, records each durably in Redis and hands it to the
//! consumer fleet in the same atomic step, so a `202 Accepted` is a promise the fleet can keep.

pub mod config;
pub mod error;
pub mod group_commit;
pub mod json_body;
pub mod metrics;
pub mod routes;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use protocol::group::ensure_consumer_group;
use protocol::{DeliveryMode, Keys};
use service::Readiness;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use routes::AppState;
use store::Store;

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let redis = &config.redis;
    let conn = redis.connection_manager()?;
    let keys = Keys::new(&redis.channel);
    let store = Store {
        conn: conn.clone(),
        keys: keys.clone(),
    };
    let (accepter, group_commit) = group_commit::start(conn, keys, redis.delivery_mode);
    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let readiness = Readiness::default();
    tracing::info!(channel = %redis.channel, mode = %redis.delivery_mode, "order service starting");

    let router = routes::api(AppState {
        store: store.clone(),
        accepter,
        metrics,
    })
    .merge(service::ops_routes(readiness.clone(), Arc::new(registry)));
    let http = service::serve(config.http_addr, router, shutdown.clone());
    // The committing task ends after the server (holding the last Accepter) has drained.
    let (http, (), ()) = tokio::join!(
        http,
        watch_redis(&store, redis.delivery_mode, &readiness, &shutdown),
        group_commit
    );
    http?;
    tracing::info!("order service stopped");
    Ok(())
}

/// Keeps `/readyz` true exactly while Redis takes writes, announces the delivery mode to the
/// consumers, and (streams mode) makes sure the consumer group exists whenever Redis comes (back)
/// up, so no entry is appended before it. The announcement is the probe: written every tick, it is
/// back within a second of a Redis that restarted empty, and it never touches an order's path.
async fn watch_redis(
    store: &Store,
    mode: DeliveryMode,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut result = store.announce_delivery_mode(mode).await;
        if result.is_ok() && mode == DeliveryMode::Streams && !readiness.get() {
            result = ensure_consumer_group(&mut store.conn.clone(), &store.keys).await;
        }
        let ok = result.is_ok();
        if ok != readiness.get() {
            match result {
                Ok(()) => tracing::info!(ready = true, "Redis available"),
                Err(e) => tracing::warn!(ready = false, error = %e, "Redis unavailable"),
            }
            readiness.set(ok);
        }
    }
}
