//! `inventory-consumer dead-letters ...`: what an operator needs once orders are dead-lettered:
//! see them with their reason, fix the cause, and replay them. Reading a dead letter (`letter`),
//! choosing what to replay and wording the outcome (`plan`) are pure; this file is the Redis
//! shell, and the replay itself is one atomic script per dead letter (`replay.lua`).
//!
//! The stream holds up to `DEAD_LETTER_MAXLEN` entries and this runs in a consumer pod (under its
//! memory limit, via `kubectl exec`), so both commands read it a page at a time and print as they
//! go: what one holds is a page, never the stream.

mod letter;
mod plan;

use std::collections::HashMap;
use std::io::Write;

use protocol::message::OrderMessage;
use protocol::{DeliveryMode, Keys};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis_io::args::RESPONSE_TIMEOUT;
use redis_io::scripts::{self, ReplayOutcome};

pub use letter::{DeadLetter, utc_timestamp};
pub use plan::{Planned, ReplayPlan, Selection, report};

use crate::config::{Config, DeadLetterCommand};
use crate::mode_check;

/// Dead letters read per `XRANGE`: a page is what the commands hold in memory at once, and a
/// thousand keeps the round trips to one per thousand entries.
const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error(transparent)]
    RedisConfig(#[from] redis_io::client::RedisConfigError),
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
    match command {
        DeadLetterCommand::List { json } => list(&mut conn, &keys, *json, out).await,
        DeadLetterCommand::Replay { all, order_ids } => {
            let selection = if *all {
                Selection::All
            } else {
                Selection::Orders(order_ids.clone())
            };
            let mode = config.redis.delivery_mode;
            check_mode(&mut conn, &keys, mode).await?;
            replay(&mut conn, &keys, mode, &selection, out).await
        }
    }
}

/// `list`: a line of text, or a JSON object (JSON Lines), per dead letter, oldest first.
async fn list(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    json: bool,
    out: &mut impl Write,
) -> Result<bool, DeadLetterError> {
    let mut pages = Pages::open(conn, keys).await?;
    let mut listed = 0;
    while let Some(page) = pages.next(conn, keys).await? {
        for letter in &page {
            if json {
                writeln!(out, "{}", letter.json())?;
            } else {
                writeln!(out, "{}", letter.line())?;
            }
        }
        out.flush()?;
        listed += page.len();
    }
    if listed == 0 && !json {
        writeln!(out, "no dead letters on channel {}", keys.channel())?;
    }
    Ok(true)
}

/// `replay`: one line per dead letter replayed or kept, as it goes, then one per orderId asked
/// for that had none. `Ok(false)` if any failed.
async fn replay(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    mode: DeliveryMode,
    selection: &Selection,
    out: &mut impl Write,
) -> Result<bool, DeadLetterError> {
    let mut plan = ReplayPlan::new(selection);
    let mut pages = Pages::open(conn, keys).await?;
    let (mut ok, mut reported) = (true, false);
    while let Some(page) = pages.next(conn, keys).await? {
        for planned in plan.page(&page) {
            let outcome = match &planned {
                Planned::Replay { letter, order } => {
                    Some(replay_one(conn, keys, mode, letter, order).await)
                }
                Planned::NotAnOrder { .. } | Planned::NoDeadLetter(_) => None,
            };
            let (line, failed) = report(&planned, outcome.as_ref());
            writeln!(out, "{line}")?;
            ok &= !failed;
            reported = true;
        }
        out.flush()?;
    }
    for planned in plan.finish() {
        let (line, failed) = report(&planned, None);
        writeln!(out, "{line}")?;
        ok &= !failed;
        reported = true;
    }
    if !reported {
        writeln!(out, "no dead letters on channel {}", keys.channel())?;
    }
    Ok(ok)
}

fn read_error(keys: &Keys, source: redis::RedisError) -> DeadLetterError {
    DeadLetterError::Read {
        key: keys.dead_letter(),
        source,
    }
}

/// The dead-letter stream as it stood when opened, oldest first, a page at a time.
#[derive(Debug)]
struct Pages {
    /// Where the next page starts: `-`, then `(id` after the last entry read (an exclusive
    /// start, Redis 6.2+), so entries a replay deleted behind it do not matter.
    start: String,
    /// The newest entry when opened; `None` once the pages reached it. Dead letters written
    /// meanwhile are left out: an order replayed without its cause fixed is dead-lettered again,
    /// and a replay that read on would replay it again, and again.
    end: Option<String>,
    size: usize,
}

impl Pages {
    async fn open(conn: &mut MultiplexedConnection, keys: &Keys) -> Result<Pages, DeadLetterError> {
        let newest: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XREVRANGE")
            .arg(keys.dead_letter())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(|source| read_error(keys, source))?;
        Ok(Pages {
            start: "-".to_owned(),
            end: newest.into_iter().next().map(|(id, _)| id),
            size: PAGE,
        })
    }

    /// The next page, `None` after the last.
    async fn next(
        &mut self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
    ) -> Result<Option<Vec<DeadLetter>>, DeadLetterError> {
        let Some(end) = &self.end else {
            return Ok(None);
        };
        let page: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(keys.dead_letter())
            .arg(&self.start)
            .arg(end)
            .arg("COUNT")
            .arg(self.size)
            .query_async(conn)
            .await
            .map_err(|source| read_error(keys, source))?;
        let page: Vec<DeadLetter> = page
            .into_iter()
            .map(|(id, fields)| DeadLetter::from_fields(&id, fields))
            .collect();
        self.advance(&page);
        Ok((!page.is_empty()).then_some(page))
    }

    /// Moves past `page`: a short page, or one that reached the end, was the last.
    fn advance(&mut self, page: &[DeadLetter]) {
        match (page.last(), &self.end) {
            (Some(last), Some(end)) if page.len() == self.size && last.id != *end => {
                self.start = format!("({}", last.id);
            }
            _ => self.end = None,
        }
    }
}

/// A replay delivers by `mode`: it must be the mode the order service announces, or the
/// replayed orders would reach no consumer.
async fn check_mode(
    conn: &mut MultiplexedConnection,
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
    conn: &mut MultiplexedConnection,
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
    use super::letter::test_letter;
    use super::*;

    fn pages(size: usize, end: &str) -> Pages {
        Pages {
            start: "-".to_owned(),
            end: Some(end.to_owned()),
            size,
        }
    }

    fn letters(ids: &[&str]) -> Vec<DeadLetter> {
        ids.iter().map(|id| test_letter(id, "{}")).collect()
    }

    #[test]
    fn pages_start_after_the_last_entry_read_and_stop_at_the_newest_when_opened() {
        let mut p = pages(2, "5-0");
        p.advance(&letters(&["1-0", "2-0"]));
        assert_eq!((p.start.as_str(), p.end.as_deref()), ("(2-0", Some("5-0")));
        p.advance(&letters(&["3-0", "5-0"]));
        assert_eq!(
            p.end, None,
            "a full page that reached the newest is the last"
        );

        let mut p = pages(2, "5-0");
        p.advance(&letters(&["4-0"]));
        assert_eq!(p.end, None, "a short page is the last");
        let mut p = pages(2, "5-0");
        p.advance(&[]);
        assert_eq!(p.end, None, "so is an empty one (all deleted meanwhile)");
    }
}
