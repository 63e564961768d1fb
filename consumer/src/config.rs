//! The consumer's configuration: every option is a flag and an environment variable; the
//! variables the operator injects are named in `protocol::env`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use protocol::env::{self, DEFAULT_LOCK_TTL_MS, DEFAULT_RETENTION_SECS};
use service::RedisArgs;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "inventory-consumer",
    version,
    about = "Applies every accepted order to inventory exactly once, as one of a fleet of replicas."
)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisArgs,

    /// How long one replica holds an order before another may take it over (pubsub lease, and
    /// the idle time after which streams entries are reclaimed from a dead consumer).
    #[arg(long, env = env::LOCK_TTL_MS, default_value_t = DEFAULT_LOCK_TTL_MS,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub lock_ttl_ms: u64,

    /// This replica's name in logs, order records and the consumer group [default: hostname].
    #[arg(long, env = env::CONSUMER_NAME)]
    pub consumer_name: Option<String>,

    /// How long an order's record (its done marker, and the idempotency key of its orderId) is
    /// kept once the order is done, in seconds (60 to 315360000, ten years). Longer than any
    /// redelivery can arrive.
    #[arg(long, env = "RETENTION_SECS", default_value_t = DEFAULT_RETENTION_SECS,
          value_parser = clap::value_parser!(u64).range(60..=315_360_000))]
    pub retention_secs: u64,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = env::HTTP_ADDR, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Most orders taken from Redis in one round trip.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,

    /// Pub/Sub mode: most messages waiting in this replica for their turn. Beyond it, new
    /// messages are shed (counted and dropped): their orders stay in the pending index, which
    /// this replica re-drives once it has caught up, so a burst costs some latency instead of
    /// unbounded memory (about 200 bytes a message).
    #[arg(long, env = "INTAKE_CAPACITY", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub intake_capacity: u64,

    /// Streams mode: deliveries after which an entry whose apply Redis still refuses goes to the
    /// dead-letter stream (lost connections never count against an entry).
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub max_deliveries: u64,

    /// Hold each order this long between taking it and applying it. For fault drills and demos
    /// of a slow replica; leave at 0 in production.
    #[arg(long, env = "APPLY_DELAY_MS", default_value_t = 0)]
    pub apply_delay_ms: u64,
}

impl Config {
    pub fn consumer_name(&self) -> String {
        self.consumer_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }

    pub fn lock_ttl(&self) -> Duration {
        Duration::from_millis(self.lock_ttl_ms)
    }

    /// How often recovery looks for orders whose holder died: often enough that a takeover
    /// happens soon after the lease ends, rarely enough to cost nothing at rest.
    pub fn recovery_interval(&self) -> Duration {
        (self.lock_ttl() / 2).max(Duration::from_millis(50))
    }

    /// Streams mode: how long a consumer of the group with nothing pending must have been
    /// silent before it counts as gone. Live consumers read every second; this is far beyond
    /// any pause a live one survives (a stopped process, a long GC, a partition).
    pub fn departed_after(&self) -> Duration {
        (self.lock_ttl() * 10).max(Duration::from_secs(600))
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_secs.saturating_mul(1000)
    }

    pub fn apply_delay(&self) -> Option<Duration> {
        (self.apply_delay_ms > 0).then(|| Duration::from_millis(self.apply_delay_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("inventory-consumer").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_work_for_the_local_quickstart() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.redis.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.redis.channel.as_str(), "order_updates");
        assert_eq!(c.lock_ttl_ms, 5000);
        assert_eq!(c.redis.delivery_mode, protocol::DeliveryMode::Pubsub);
        // The operator points probes at this port: the default must be the contract's.
        assert_eq!(c.http_addr.port(), env::CONSUMER_HTTP_PORT);
        assert!(!c.consumer_name().is_empty());
    }

    #[test]
    fn bad_values_name_the_option_and_the_rule() {
        let err = parse(&["--lock-ttl-ms", "5"]).unwrap_err().to_string();
        assert!(
            err.contains("--lock-ttl-ms") && err.contains("100"),
            "{err}"
        );
        let err = parse(&["--delivery-mode", "kafka"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DELIVERY_MODE must be `pubsub` or `streams`"),
            "{err}"
        );
        let err = parse(&["--channel", "a{b}"]).unwrap_err().to_string();
        assert!(err.contains("CHANNEL must be"), "{err}");
    }
}
