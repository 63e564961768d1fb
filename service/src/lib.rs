//! The operational habits every deployable shares, written once: JSON logs in containers,
//! `/healthz` `/readyz` `/metrics`, and a shutdown token that fires on SIGTERM or Ctrl-C.

pub mod ops_http;
pub mod redis_args;
pub mod redis_client;
pub mod redis_conn;
pub mod redis_floor;
pub mod shutdown;
pub mod telemetry;

pub use ops_http::{Readiness, ops_routes, serve};
pub use redis_args::RedisArgs;
pub use shutdown::shutdown_token;
