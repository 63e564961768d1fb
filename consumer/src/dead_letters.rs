//! `inventory-consumer dead-letters ...`: what an operator needs once orders are dead-lettered:
//! see them with their reason, fix the cause, and replay them. Reading a dead letter, choosing
//! what to replay and wording the outcome are pure; the Redis calls are the short functions at
//! the end, and the replay itself is one atomic script per dead letter (`replay.lua`).

use std::collections::HashMap;
use std::io::Write;

use protocol::message::{OrderMessage, STREAM_FIELD};
use protocol::order::OrderId;
use protocol::scripts::{self, ReplayOutcome};
use protocol::{DeliveryMode, Keys};
use redis::AsyncCommands;
use serde_json::json;
use service::redis_args::RESPONSE_TIMEOUT;

use crate::config::{Config, DeadLetterCommand};
use crate::mode_check;

/// One entry of the dead-letter stream, as the dead-lettering scripts write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (what a replay deletes).
    pub id: String,
    /// The stream entry it came from; empty for a pubsub order.
    pub source_entry: String,
    /// The payload as it arrived.
    pub payload: Vec<u8>,
    pub reason: String,
    pub consumer: String,
    /// How many deliveries were refused; `None` for one never retried (it could not be parsed,
    /// or its orderId belongs to another event).
    pub deliveries: Option<u64>,
}

impl DeadLetter {
    pub fn from_fields(id: &str, mut fields: HashMap<String, Vec<u8>>) -> DeadLetter {
        let mut text = |name: &str| {
            String::from_utf8_lossy(&fields.remove(name).unwrap_or_default()).into_owned()
        };
        DeadLetter {
            id: id.to_owned(),
            source_entry: text("entry"),
            reason: text("reason"),
            consumer: text("consumer"),
            deliveries: text("deliveries").parse().ok(),
            payload: fields.remove(STREAM_FIELD).unwrap_or_default(),
        }
    }

    /// The order it carries, or why it carries none.
    pub fn order(&self) -> Result<OrderMessage, String> {
        OrderMessage::parse(&self.payload).map_err(|e| format!("its payload is not an order: {e}"))
    }

    /// When it was dead-lettered: the time part of its stream id (Redis' clock, ms).
    pub fn time_ms(&self) -> Option<u64> {
        self.id.split_once('-')?.0.parse().ok()
    }

    /// One line for `list`.
    pub fn line(&self) -> String {
        let order_id = self.order().map(|m| m.order_id.to_string());
        format!(
            "{id}  order={order}  time={time}  consumer={consumer}  deliveries={deliveries}  reason={reason}",
            id = self.id,
            order = order_id.as_deref().unwrap_or("-"),
            time = self.time_ms().map(utc_timestamp).unwrap_or_default(),
            consumer = self.consumer,
            deliveries = self.deliveries.map_or("-".to_owned(), |n| n.to_string()),
            reason = self.reason,
        )
    }

    /// One JSON object for `list --json`.
    pub fn json(&self) -> serde_json::Value {
        let order = self.order().ok();
        json!({
            "id": self.id,
            "orderId": order.as_ref().map(|m| m.order_id.as_str()),
            "eventId": order.as_ref().map(|m| m.id.as_str()),
            "reason": self.reason,
            "consumer": self.consumer,
            "deliveries": self.deliveries,
            "timeMs": self.time_ms(),
            "time": self.time_ms().map(utc_timestamp),
            "sourceEntry": (!self.source_entry.is_empty()).then_some(&self.source_entry),
            "payload": String::from_utf8_lossy(&self.payload),
        })
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (days to a civil date: Howard Hinnant's
/// algorithm), so a list reads without a conversion tool.
pub fn utc_timestamp(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// Which dead letters a replay is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Orders(Vec<OrderId>),
}

/// What a replay does with one dead letter or one order asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned<'a> {
    /// Run the replay script on it.
    Replay {
        letter: &'a DeadLetter,
        order: OrderMessage,
    },
    /// It carries no order (an unparsable payload): kept, and the replay fails.
    NotAnOrder {
        letter: &'a DeadLetter,
        reason: String,
    },
    /// An orderId asked for has no dead letter (replayed before, or never dead-lettered).
    NoDeadLetter(OrderId),
}

/// The dead letters `selection` names, oldest first, then the orderIds that have none.
pub fn plan<'a>(letters: &'a [DeadLetter], selection: &Selection) -> Vec<Planned<'a>> {
    let wanted = |order_id: &OrderId| match selection {
        Selection::All => true,
        Selection::Orders(ids) => ids.contains(order_id),
    };
    let mut planned = Vec::new();
    let mut found = Vec::new();
    for letter in letters {
        match letter.order() {
            Ok(order) if wanted(&order.order_id) => {
                found.push(order.order_id.clone());
                planned.push(Planned::Replay { letter, order });
            }
            Ok(_) => {}
            Err(reason) if *selection == Selection::All => {
                planned.push(Planned::NotAnOrder { letter, reason })
            }
            Err(_) => {}
        }
    }
    if let Selection::Orders(ids) = selection {
        let mut missing: Vec<&OrderId> = ids.iter().filter(|id| !found.contains(id)).collect();
        missing.dedup();
        planned.extend(missing.into_iter().cloned().map(Planned::NoDeadLetter));
    }
    planned
}

/// The line a replay prints for one dead letter or orderId, and whether it counts as a failure
/// (the dead letter is still there and replaying it again will not help).
pub fn report(
    planned: &Planned<'_>,
    outcome: Option<&Result<ReplayOutcome, String>>,
) -> (String, bool) {
    match (planned, outcome) {
        (Planned::NoDeadLetter(order_id), _) => (
            format!(
                "order {order_id}: no dead letter (replayed before, or never dead-lettered): nothing to do"
            ),
            false,
        ),
        (Planned::NotAnOrder { letter, reason }, _) => (
            format!("dead letter {}: not replayable, {reason}; kept", letter.id),
            true,
        ),
        (Planned::Replay { letter, order }, outcome) => {
            let head = format!("order {} (dead letter {})", order.order_id, letter.id);
            match outcome {
                Some(Ok(ReplayOutcome::Replayed)) => (
                    format!("{head}: replayed: accepted again and delivered"),
                    false,
                ),
                Some(Ok(ReplayOutcome::AlreadyDone { status })) => (
                    format!(
                        "{head}: already {status} (replayed before): dead letter deleted, nothing else changed"
                    ),
                    false,
                ),
                Some(Ok(ReplayOutcome::Gone)) => (
                    format!("{head}: replayed meanwhile by someone else: nothing to do"),
                    false,
                ),
                Some(Ok(ReplayOutcome::NoRecord)) => (
                    format!(
                        "{head}: not replayable, the order has no record (never accepted, or its retention ran out); kept"
                    ),
                    true,
                ),
                Some(Ok(ReplayOutcome::Conflict { owner })) => (
                    format!(
                        "{head}: not replayable, orderId {} belongs to event {owner}, not this payload's {}; kept",
                        order.order_id, order.id
                    ),
                    true,
                ),
                Some(Err(error)) => (format!("{head}: replay failed: {error}"), true),
                None => (format!("{head}: not attempted"), true),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error(transparent)]
    RedisConfig(#[from] service::redis_client::RedisConfigError),
    #[error("connecting to Redis (REDIS_URL): {0}")]
    Connect(redis::RedisError),
    #[error("reading the dead-letter stream {key}: {source}")]
    Read {
        key: String,
        source: redis::RedisError,
    },
    #[error("DELIVERY_MODE: {0}; replay would deliver where no consumer reads")]
    ModeMismatch(String),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs a `dead-letters` subcommand, printing to `out`. `Ok(false)` when some dead letter could
/// not be replayed (the process then exits non-zero).
pub async fn run(
    config: &Config,
    command: &DeadLetterCommand,
    out: &mut impl Write,
) -> Result<bool, DeadLetterError> {
    let keys = Keys::new(&config.redis.channel);
    let timeouts = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = config
        .redis
        .client()?
        .get_multiplexed_async_connection_with_config(&timeouts)
        .await
        .map_err(DeadLetterError::Connect)?;
    let letters = read_all(&mut conn, &keys).await?;
    match command {
        DeadLetterCommand::List { json } => {
            for letter in &letters {
                if *json {
                    writeln!(out, "{}", letter.json())?;
                } else {
                    writeln!(out, "{}", letter.line())?;
                }
            }
            if letters.is_empty() && !json {
                writeln!(out, "no dead letters on channel {}", keys.channel())?;
            }
            Ok(true)
        }
        DeadLetterCommand::Replay { all, order_ids } => {
            let selection = if *all {
                Selection::All
            } else {
                Selection::Orders(order_ids.clone())
            };
            let mode = config.redis.delivery_mode;
            check_mode(&mut conn, &keys, mode).await?;
            let mut ok = true;
            let planned = plan(&letters, &selection);
            if planned.is_empty() {
                writeln!(out, "no dead letters on channel {}", keys.channel())?;
            }
            for p in &planned {
                let outcome = match p {
                    Planned::Replay { letter, order } => {
                        Some(replay_one(&mut conn, &keys, mode, letter, order).await)
                    }
                    _ => None,
                };
                let (line, failed) = report(p, outcome.as_ref());
                writeln!(out, "{line}")?;
                ok &= !failed;
            }
            Ok(ok)
        }
    }
}

fn read_error(keys: &Keys, source: redis::RedisError) -> DeadLetterError {
    DeadLetterError::Read {
        key: keys.dead_letter(),
        source,
    }
}

/// Every dead letter, oldest first, a page at a time.
async fn read_all(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    const PAGE: usize = 1000;
    let key = keys.dead_letter();
    let mut letters = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .map_err(|source| read_error(keys, source))?;
        let full = page.len() == PAGE;
        letters.extend(
            page.into_iter()
                .map(|(id, f)| DeadLetter::from_fields(&id, f)),
        );
        match letters.last() {
            // `(id` starts after id: exclusive ranges (Redis 6.2+).
            Some(last) if full => start = format!("({}", last.id),
            _ => return Ok(letters),
        }
    }
}

/// A replay delivers by `mode`: it must be the mode the order service announces, or the
/// replayed orders would reach no consumer.
async fn check_mode(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    mode: DeliveryMode,
) -> Result<(), DeadLetterError> {
    let announced: Option<String> = conn
        .get(keys.delivery_mode())
        .await
        .map_err(|source| read_error(keys, source))?;
    match mode_check::mismatch(mode, announced.as_deref()) {
        Some(m) => Err(DeadLetterError::ModeMismatch(m.explain(keys.channel()))),
        None => Ok(()),
    }
}

async fn replay_one(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    mode: DeliveryMode,
    letter: &DeadLetter,
    order: &OrderMessage,
) -> Result<ReplayOutcome, String> {
    let reply: redis::Value =
        scripts::replay_invocation(keys, mode, &letter.id, &order.order_id, order.id.as_str())
            .invoke_async(conn)
            .await
            .map_err(|e| e.to_string())?;
    scripts::parse_replay_reply(reply).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str, payload: &str) -> DeadLetter {
        let fields: HashMap<String, Vec<u8>> = [
            ("entry", ""),
            ("order", payload),
            ("reason", "apply failed after 5 deliveries: boom"),
            ("consumer", "c-0"),
            ("deliveries", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        DeadLetter::from_fields(id, fields)
    }

    fn order_json(order_id: &str) -> String {
        format!(
            r#"{{"id":"e-{order_id}","orderId":"{order_id}","items":[{{"id":"a","quantity":1}}]}}"#
        )
    }

    #[test]
    fn reads_a_dead_letter_and_shows_it() {
        let l = letter("1700000000123-0", &order_json("o1"));
        assert_eq!(l.deliveries, Some(5));
        assert_eq!(l.time_ms(), Some(1_700_000_000_123));
        let line = l.line();
        assert!(
            line.contains("order=o1") && line.contains("reason=apply failed"),
            "{line}"
        );
        assert!(line.contains("time=2023-11-14T22:13:20.123Z"), "{line}");
        let json = l.json();
        assert_eq!(json["orderId"], "o1");
        assert_eq!(json["deliveries"], 5);
        assert_eq!(json["sourceEntry"], serde_json::Value::Null);
        let bad = letter("1-0", "not json");
        assert!(bad.line().contains("order=-"));
        assert_eq!(bad.json()["orderId"], serde_json::Value::Null);
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_timestamp(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_replay_plans_what_was_asked_and_names_what_is_missing() {
        let letters = [
            letter("1-0", &order_json("o1")),
            letter("2-0", "not json"),
            letter("3-0", &order_json("o2")),
            letter("4-0", &order_json("o1")),
        ];
        let all = plan(&letters, &Selection::All);
        assert_eq!(all.len(), 4);
        assert!(matches!(all[1], Planned::NotAnOrder { .. }));
        let id = |s: &str| OrderId::parse("orderId", s).unwrap();
        let some = plan(&letters, &Selection::Orders(vec![id("o1"), id("o9")]));
        let ids: Vec<String> = some
            .iter()
            .map(|p| match p {
                Planned::Replay { letter, .. } => letter.id.clone(),
                Planned::NoDeadLetter(id) => id.to_string(),
                Planned::NotAnOrder { .. } => panic!("not asked for"),
            })
            .collect();
        assert_eq!(ids, ["1-0", "4-0", "o9"]);
    }

    #[test]
    fn only_what_a_replay_cannot_fix_fails() {
        let l = letter("1-0", &order_json("o1"));
        let order = l.order().unwrap();
        let p = Planned::Replay { letter: &l, order };
        let cases = [
            (Ok(ReplayOutcome::Replayed), false, "replayed"),
            (
                Ok(ReplayOutcome::AlreadyDone {
                    status: "applied".into(),
                }),
                false,
                "already applied",
            ),
            (Ok(ReplayOutcome::Gone), false, "nothing to do"),
            (Ok(ReplayOutcome::NoRecord), true, "no record"),
            (
                Ok(ReplayOutcome::Conflict {
                    owner: "e-9".into(),
                }),
                true,
                "belongs to event e-9",
            ),
            (Err("connection refused".into()), true, "replay failed"),
        ];
        for (outcome, fails, says) in cases {
            let (line, failed) = report(&p, Some(&outcome));
            assert_eq!(failed, fails, "{line}");
            assert!(
                line.starts_with("order o1 (dead letter 1-0)") && line.contains(says),
                "{line}"
            );
        }
        let (line, failed) = report(
            &Planned::NoDeadLetter(OrderId::parse("o", "o9").unwrap()),
            None,
        );
        assert!(!failed && line.contains("no dead letter"), "{line}");
    }
}
