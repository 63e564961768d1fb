//! The operational habits every deployable shares, written once: JSON logs in containers,
//! `/healthz` `/readyz` `/metrics`, and a shutdown token that fires on SIGTERM or Ctrl-C.

pub mod ops_http;
pub mod shutdown;
pub mod telemetry;

pub use ops_http::{Readiness, ops_routes, serve};
pub use shutdown::shutdown_token;
