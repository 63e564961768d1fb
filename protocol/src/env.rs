//! The consumer's environment contract: the operator injects exactly these variables and the
//! consumer reads exactly these, so both sides name them from here.

pub const REDIS_URL: &str = "REDIS_URL";
pub const CHANNEL: &str = "CHANNEL";
pub const LOCK_TTL_MS: &str = "LOCK_TTL_MS";
pub const DELIVERY_MODE: &str = "DELIVERY_MODE";
pub const CONSUMER_NAME: &str = "CONSUMER_NAME";
pub const HTTP_ADDR: &str = "HTTP_ADDR";

/// Defaults shared by the consumer's flags and the operator's CRD.
pub const DEFAULT_CHANNEL: &str = "order_updates";
pub const DEFAULT_LOCK_TTL_MS: u64 = 5_000;
/// The consumer's HTTP port (`/healthz`, `/readyz`, `/metrics`).
pub const CONSUMER_HTTP_PORT: u16 = 8080;

/// How long done markers and order records are kept: far beyond any redelivery horizon
/// (lock TTL, reclaim idle time, client retries), so a late duplicate always finds its marker.
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;
