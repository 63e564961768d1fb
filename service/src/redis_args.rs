//! What the order service and the consumers both need to find the fleet's orders: the Redis
//! URL, the channel (which also names the keys), and the delivery mode, as flags
//! and environment variables, plus the one way both open their Redis connection.

use std::time::Duration;

use clap::Args;
use protocol::env::{self, DEFAULT_CHANNEL};
use protocol::{Channel, DeliveryMode};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis that records orders and keeps inventory (redis:// or rediss://).
    #[arg(long, env = env::REDIS_URL, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// The channel orders are published on; it also names the fleet's Redis keys.
    #[arg(long, env = env::CHANNEL, default_value = DEFAULT_CHANNEL)]
    pub channel: Channel,

    /// `pubsub` (every consumer hears every order) or `streams` (a consumer group); the order
    /// service and its consumers must agree.
    #[arg(long, env = env::DELIVERY_MODE, default_value = "pubsub")]
    pub delivery_mode: DeliveryMode,
}

#[derive(Debug, thiserror::Error)]
#[error("REDIS_URL is not a usable Redis URL ({url}): {source}")]
pub struct BadRedisUrl {
    url: String,
    source: redis::RedisError,
}

impl RedisArgs {
    pub fn client(&self) -> Result<redis::Client, BadRedisUrl> {
        redis::Client::open(self.redis_url.as_str()).map_err(|source| BadRedisUrl {
            url: self.redis_url.clone(),
            source,
        })
    }

    /// A multiplexed connection for short commands that reconnects by itself; it connects on
    /// first use, so a process can start (not ready) while Redis is down.
    pub fn connection_manager(&self) -> Result<ConnectionManager, BadRedisUrl> {
        ConnectionManager::new_lazy_with_config(self.client()?, connection_config(RESPONSE_TIMEOUT))
            .map_err(|source| BadRedisUrl {
                url: self.redis_url.clone(),
                source,
            })
    }
}

/// How long a short command may take before the call counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `response_timeout` must exceed any blocking command sent on the connection.
pub fn connection_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}
