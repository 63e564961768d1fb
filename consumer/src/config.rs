//! The consumer's configuration: every option is a flag and an environment variable; the
//! variables the operator injects are named in `protocol::env`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use protocol::env::{self, DEFAULT_LOCK_TTL_MS, DEFAULT_RETENTION_SECS};
use protocol::order::OrderId;
use redis_io::RedisArgs;

/// The command line: the consumer itself (no subcommand), or an operation on the fleet's Redis.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "inventory-consumer",
    version,
    about = "Applies every accepted order to inventory exactly once, as one of a fleet of replicas.",
    after_help = "Options go before a subcommand: `inventory-consumer --channel orders dead-letters list`."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(flatten)]
    pub log: service::telemetry::LogArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Inspect and replay the dead-letter stream of the fleet on CHANNEL (REDIS_URL and
    /// DELIVERY_MODE as for the consumer), then exit.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeadLetterCommand {
    /// Every dead letter, oldest first: entry id, orderId, reason, consumer, deliveries, time.
    List {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Deliver dead-lettered orders again, once their cause is fixed: each record goes back to
    /// accepted, the order is delivered by the fleet's mode, and its dead letter is deleted.
    /// Replaying again is harmless. Exits non-zero if any dead letter could not be replayed.
    Replay {
        /// Every dead letter.
        #[arg(
            long,
            conflicts_with = "order_ids",
            required_unless_present = "order_ids"
        )]
        all: bool,
        /// The orders to replay (their orderIds).
        #[arg(value_parser = parse_order_id)]
        order_ids: Vec<OrderId>,
    },
}

fn parse_order_id(s: &str) -> Result<OrderId, String> {
    OrderId::parse("ORDER_ID", s).map_err(|e| e.to_string())
}

/// The consumer's settings (every one also an environment variable).
#[derive(Debug, Clone, Parser)]
#[command(name = "inventory-consumer")]
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

    /// Deliveries after which an order whose apply Redis still refuses (a stock value that is
    /// not a whole number, a key of the wrong type) goes to the dead-letter stream and its
    /// record says dead-lettered, in both modes: streams counts an entry's deliveries, pubsub
    /// counts refusals fleet-wide in Redis. Lost connections never count against an order.
    /// Fix the cause, then `inventory-consumer dead-letters replay`.
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub max_deliveries: u64,

    /// About how many entries the dead-letter stream keeps (100 to 10000000). Beyond it the
    /// oldest dead letters are trimmed: their payloads are gone from the stream (and so cannot
    /// be replayed), while their order records keep saying dead-lettered, with the reason.
    #[arg(long, env = "DEAD_LETTER_MAXLEN", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    pub dead_letter_maxlen: u64,

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

    /// What the scripts that end an order are told about this replica.
    pub fn settler<'a>(&self, consumer: &'a str) -> redis_io::scripts::Settler<'a> {
        redis_io::scripts::Settler {
            consumer,
            retention_ms: self.retention_ms(),
            dead_letter_maxlen: self.dead_letter_maxlen,
        }
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
        let err = parse(&["--dead-letter-maxlen", "10"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--dead-letter-maxlen") && err.contains("100"),
            "{err}"
        );
    }

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("inventory-consumer").chain(args.iter().copied()))
    }

    #[test]
    fn no_subcommand_runs_the_consumer_with_its_options() {
        let c = cli(&["--lock-ttl-ms", "2000"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.config.lock_ttl_ms, 2000);
        assert_eq!(c.config.dead_letter_maxlen, 10_000);
    }

    #[test]
    fn dead_letter_subcommands_parse_and_say_what_is_wrong() {
        let c = cli(&["--channel", "x", "dead-letters", "list", "--json"]).unwrap();
        assert_eq!(c.config.redis.channel.as_str(), "x");
        assert!(matches!(
            c.command,
            Some(Command::DeadLetters(DeadLetterCommand::List { json: true }))
        ));
        let c = cli(&["dead-letters", "replay", "o1", "o2"]).unwrap();
        let Some(Command::DeadLetters(DeadLetterCommand::Replay { all, order_ids })) = c.command
        else {
            panic!("{c:?}")
        };
        assert!(!all);
        assert_eq!(order_ids.len(), 2);
        assert!(cli(&["dead-letters", "replay", "--all"]).is_ok());
        let err = cli(&["dead-letters", "replay"]).unwrap_err().to_string();
        assert!(err.contains("--all"), "{err}");
        let err = cli(&["dead-letters", "replay", "--all", "o1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = cli(&["dead-letters", "replay", "a b"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ORDER_ID"), "{err}");
    }
}
