//! What every part of a running consumer shares: its name, the fleet's keys, Redis handles,
//! metrics and readiness.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use protocol::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use service::Readiness;

use crate::config::Config;
use crate::metrics::Metrics;

pub struct Context {
    pub config: Config,
    pub name: String,
    pub keys: Keys,
    pub client: redis::Client,
    /// Multiplexed connection for short commands (leases, applies, recovery). It reconnects by
    /// itself; a call that fails meanwhile leaves its orders to the recovery paths.
    pub conn: ConnectionManager,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

#[derive(Debug, thiserror::Error)]
#[error("REDIS_URL is not a usable Redis URL ({url}): {source}")]
pub struct BadRedisUrl {
    url: String,
    source: redis::RedisError,
}

impl Context {
    pub fn new(config: Config, registry: &mut Registry) -> Result<Arc<Self>, BadRedisUrl> {
        let client =
            redis::Client::open(config.redis_url.as_str()).map_err(|source| BadRedisUrl {
                url: config.redis_url.clone(),
                source,
            })?;
        let conn = ConnectionManager::new_lazy_with_config(
            client.clone(),
            connection_config(Duration::from_secs(5)),
        )
        .map_err(|source| BadRedisUrl {
            url: config.redis_url.clone(),
            source,
        })?;
        Ok(Arc::new(Context {
            name: config.consumer_name(),
            keys: Keys::new(&config.channel),
            client,
            conn,
            metrics: Metrics::new(registry),
            readiness: Readiness::default(),
            config,
        }))
    }

    /// A connection of its own for blocking reads (`XREADGROUP BLOCK`), which would otherwise
    /// hold up every command queued behind them on the shared multiplexed connection.
    pub async fn blocking_connection(
        &self,
        block: Duration,
    ) -> redis::RedisResult<ConnectionManager> {
        ConnectionManager::new_with_config(
            self.client.clone(),
            connection_config(block + Duration::from_secs(5)),
        )
        .await
    }

    pub fn retention_ms(&self) -> u64 {
        self.config.retention_ms()
    }
}

fn connection_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}
