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
use protocol::{DeliveryMode, Keys};
use redis_io::RedisArgs;
use redis_io::floor as redis_floor;
use redis_io::group::ensure_consumer_group;
use service::Readiness;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use routes::AppState;
use store::Store;

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let redis = &config.redis;
    let conn = redis.connection()?;
    let keys = Keys::new(&redis.channel);
    let store = Store {
        conn: conn.clone(),
        keys: keys.clone(),
    };
    let (accepter, group_commit) = group_commit::start(conn, keys, redis.delivery_mode);
    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let readiness = Readiness::default();
    tracing::info!(channel = %redis.channel, mode = %redis.delivery_mode, redis = %redis.endpoint(), "order service starting");

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
        watch_redis(&store, redis.delivery_mode, &readiness, redis, &shutdown),
        group_commit
    );
    http?;
    tracing::info!("order service stopped");
    Ok(())
}

/// Keeps `/readyz` true exactly while Redis answers and is at least the version floor (checked
/// every tick: a failover may land on another server), announces the delivery mode to the
/// consumers, and, whenever Redis comes (back) up, (streams mode) makes sure the consumer group
/// exists, so no entry is appended before it. The announcement is written every tick, so it is
/// back within a second of a Redis that restarted empty, and it never touches an order's path.
async fn watch_redis(
    store: &Store,
    mode: DeliveryMode,
    readiness: &Readiness,
    redis_args: &RedisArgs,
    shutdown: &CancellationToken,
) {
    let endpoint = redis_args.endpoint();
    let endpoint = endpoint.as_str();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announcing = true;
    // The errors logged since Redis was last available: each is logged once per outage, however
    // they alternate (a scheme mismatch answers with a reset one time, a closed stream the next).
    let mut logged: Option<std::collections::HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut conn = store.conn.clone();
        let was_ready = readiness.get();
        let verdict: Result<(), String> = async {
            let text = |e: redis::RedisError| e.to_string();
            // Every tick, not only on coming up: a failover can land on another server between
            // two ticks without the connection ever failing a PING.
            let server = redis_floor::check(&mut conn, readiness)
                .await
                .map_err(text)?;
            // A Redis that refuses writes (full, with noeviction) still serves reads and answers
            // new orders with 503: that costs the announcement, not readiness.
            let announced = store.announce_delivery_mode(mode).await;
            if announced.is_ok() != announcing {
                announcing = announced.is_ok();
                match announced {
                    Ok(()) => tracing::info!(mode = mode.as_str(), "delivery mode announced"),
                    Err(e) => tracing::warn!(error = %e, "cannot announce the delivery mode"),
                }
            }
            if !was_ready {
                if mode == DeliveryMode::Streams {
                    ensure_consumer_group(&mut conn, &store.keys)
                        .await
                        .map_err(text)?;
                }
                tracing::info!(ready = true, redis = endpoint, %server, "Redis available");
            }
            Ok(())
        }
        .await;
        match &verdict {
            Ok(()) => logged = None,
            Err(error) => {
                let logged = logged.get_or_insert_with(Default::default);
                if logged.insert(error.clone()) {
                    let hint = redis_args.hint(error);
                    tracing::warn!(
                        ready = false,
                        redis = endpoint,
                        error,
                        hint,
                        "Redis unavailable"
                    );
                }
            }
        }
        readiness.set(verdict.is_ok());
    }
}
