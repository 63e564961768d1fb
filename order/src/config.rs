//! The order service's configuration, by flag or environment variable.

use std::net::SocketAddr;

use clap::Parser;
use protocol::env;
use redis_io::RedisArgs;

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

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub log: service::telemetry::LogArgs,
}
