//! What every part of a running consumer shares: its name, the fleet's keys, Redis handles,
//! metrics and readiness.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use protocol::Keys;
use redis::aio::ConnectionManager;
use redis_io::args::{RESPONSE_TIMEOUT, connection_config};
use redis_io::client::RedisConfigError;
use redis_io::conn::RedisConn;
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
    pub conn: RedisConn,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

impl Context {
    pub fn new(config: Config, registry: &mut Registry) -> Result<Arc<Self>, RedisConfigError> {
        Ok(Arc::new(Context {
            name: config.consumer_name(),
            keys: Keys::new(&config.redis.channel),
            client: config.redis.client()?,
            conn: config.redis.connection()?,
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
            connection_config(block + RESPONSE_TIMEOUT),
        )
        .await
    }

    pub fn retention_ms(&self) -> u64 {
        self.config.retention_ms()
    }
}
