//! The order service's configuration, by flag or environment variable.

use std::net::SocketAddr;

use clap::Parser;
use protocol::env::{self, DEFAULT_CHANNEL, DEFAULT_RETENTION_SECS};
use protocol::{Channel, DeliveryMode};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "order-service",
    version,
    about = "Accepts orders over HTTP, records each durably in Redis and hands it to the inventory consumers."
)]
pub struct Config {
    /// Address to serve the API, /healthz, /readyz and /metrics on.
    #[arg(long, env = env::HTTP_ADDR, default_value = "0.0.0.0:3001")]
    pub http_addr: SocketAddr,

    /// Redis that records orders and keeps inventory (redis:// or rediss://).
    #[arg(long, env = env::REDIS_URL, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// The channel the consumer fleet listens on; it also names the fleet's Redis keys.
    #[arg(long, env = env::CHANNEL, default_value = DEFAULT_CHANNEL)]
    pub channel: Channel,

    /// `pubsub` (PUBLISH on the channel) or `streams` (append to the fleet's stream); must match
    /// the consumers'.
    #[arg(long, env = env::DELIVERY_MODE, default_value = "pubsub")]
    pub delivery_mode: DeliveryMode,

    /// How long order records and idempotency keys are kept, in seconds.
    #[arg(long, env = "RETENTION_SECS", default_value_t = DEFAULT_RETENTION_SECS,
          value_parser = clap::value_parser!(u64).range(60..))]
    pub retention_secs: u64,
}
