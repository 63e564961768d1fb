//! The Lua scripts both deployables run, with pure builders for their invocations and parsers for
//! their replies. Scripts are sent by SHA; after a Redis restart empties the script cache,
//! [`load_all`] puts them back (callers retry once on `NOSCRIPT`).

use std::sync::LazyLock;

use redis::{ErrorKind, RedisError, ScriptInvocation, ServerErrorKind, Value};

use crate::DeliveryMode;
use crate::keys::{CONSUMER_GROUP, Keys};
use crate::message::OrderMessage;
use crate::order::OrderId;

/// A script that dead-letters orders, with the one definition of doing so in front of it
/// (Redis scripts cannot import one another).
macro_rules! dead_lettering {
    ($file:literal) => {
        concat!(include_str!("lua/dead_letter_lib.lua"), include_str!($file))
    };
}

pub static ACCEPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/accept.lua")));
pub static APPLY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(dead_lettering!("lua/apply.lua")));
pub static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/release.lua")));
pub static DEAD_LETTER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(dead_lettering!("lua/dead_letter.lua")));
pub static REFUSED: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(dead_lettering!("lua/refused.lua")));
pub static REPLAY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/replay.lua")));
pub static FORGET_CONSUMERS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/forget_consumers.lua")));

/// Loads every script, for pipelines that send `EVALSHA` without the load-and-retry of
/// `ScriptInvocation::invoke_async`.
pub async fn load_all(conn: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for script in [
        &*ACCEPT,
        &*APPLY,
        &*RELEASE,
        &*DEAD_LETTER,
        &*REFUSED,
        &*REPLAY,
        &*FORGET_CONSUMERS,
    ] {
        pipe.load_script(script).ignore();
    }
    pipe.query_async(conn).await
}

fn is_noscript(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Runs a pipeline of script invocations; if Redis lost its script cache (a restart), loads the
/// scripts and runs it once more. Safe because every script here is idempotent.
pub async fn query_pipeline<T: redis::FromRedisValue>(
    conn: &mut impl redis::aio::ConnectionLike,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<T> {
    match pipe.query_async(conn).await {
        Err(e) if is_noscript(&e) => {
            load_all(conn).await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
}

/// One order of an apply batch: its message and, in streams mode, the entry that carried it
/// (acknowledged and deleted in the same atomic step as the order's apply).
#[derive(Debug, Clone, Copy)]
pub struct ApplyItem<'a> {
    pub message: &'a OrderMessage,
    pub entry_id: Option<&'a str>,
}

/// Who settles orders and how long the traces of a settled order last: what every script that
/// ends an order (applies it or dead-letters it) is told.
#[derive(Debug, Clone, Copy)]
pub struct Settler<'a> {
    /// Written into the record (`consumer`) and the dead letters.
    pub consumer: &'a str,
    /// How long a done record is kept.
    pub retention_ms: u64,
    /// The dead-letter stream is trimmed to about this many entries.
    pub dead_letter_maxlen: u64,
}

/// The apply of a batch of orders in one script call; `group` is the consumer group when the
/// orders came from the stream.
pub fn apply_invocation<'a>(
    keys: &Keys,
    settler: &Settler<'_>,
    group: Option<&str>,
    orders: &[ApplyItem<'_>],
) -> ScriptInvocation<'a> {
    let mut inv = APPLY.prepare_invoke();
    inv.key(keys.inventory())
        .key(keys.pending())
        .key(keys.stream())
        .key(keys.dead_letter())
        .key(keys.refusals());
    inv.arg(settler.consumer)
        .arg(settler.retention_ms)
        .arg(group.unwrap_or(""))
        .arg(settler.dead_letter_maxlen);
    for order in orders {
        let message = order.message;
        inv.key(keys.order(&message.order_id));
        let totals = message.items.totals();
        inv.arg(message.id.as_str())
            .arg(order.entry_id.unwrap_or(""))
            .arg(message.order_id.as_str())
            .arg(message.to_json())
            .arg(totals.len());
        for (item, quantity) in totals {
            inv.arg(item.as_str()).arg(quantity);
        }
    }
    inv
}

/// How one apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied {
        at_ms: u64,
    },
    /// Not enough stock for some line: nothing was taken.
    Rejected {
        reason: String,
        at_ms: u64,
    },
    /// Done before (by `by`, ending in `status`): nothing changed.
    Duplicate {
        status: String,
        by: String,
    },
    /// The orderId belongs to another event (`owner`): this one was not applied, and a stream
    /// entry carrying it went to the dead-letter stream.
    Conflict {
        owner: String,
    },
    /// Redis refused this order's apply (a key of the wrong type...): nothing changed.
    Failed {
        error: String,
    },
}

impl ApplyOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ApplyOutcome::Applied { .. } => "applied",
            ApplyOutcome::Rejected { .. } => "rejected",
            ApplyOutcome::Duplicate { .. } => "duplicate",
            ApplyOutcome::Conflict { .. } => "conflict",
            ApplyOutcome::Failed { .. } => "error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from the {script} script: {reply:?}")]
pub struct UnexpectedReply {
    pub script: &'static str,
    pub reply: Value,
}

/// A batch script's reply: three strings per order, each order's three turned into an outcome
/// by `outcome` (`None`: not a reply this script gives).
fn per_order<T>(
    script: &'static str,
    reply: Value,
    orders: usize,
    outcome: impl Fn([String; 3]) -> Option<T>,
) -> Result<Vec<T>, UnexpectedReply> {
    let parsed = redis::from_redis_value_ref::<Vec<String>>(&reply)
        .ok()
        .filter(|fields| fields.len() == orders * 3)
        .and_then(|fields| {
            let mut fields = fields.into_iter();
            (0..orders)
                .map(|_| {
                    let three = [(); 3].map(|()| fields.next().unwrap_or_default());
                    outcome(three)
                })
                .collect::<Option<Vec<T>>>()
        });
    parsed.ok_or(UnexpectedReply { script, reply })
}

/// The outcomes of a batch apply, in the order of the batch.
pub fn parse_apply_reply(
    reply: Value,
    orders: usize,
) -> Result<Vec<ApplyOutcome>, UnexpectedReply> {
    let ms = |s: &str| s.parse::<u64>().ok();
    per_order("apply", reply, orders, |[outcome, a, b]| {
        match outcome.as_str() {
            "applied" => ms(&b).map(|at_ms| ApplyOutcome::Applied { at_ms }),
            "rejected" => ms(&b).map(|at_ms| ApplyOutcome::Rejected { reason: a, at_ms }),
            "duplicate" => Some(ApplyOutcome::Duplicate { status: a, by: b }),
            "conflict" => Some(ApplyOutcome::Conflict { owner: a }),
            "error" => Some(ApplyOutcome::Failed { error: a }),
            _ => None,
        }
    })
}

/// Streams: moves the entry `entry_id` (carrying `payload`) to the dead-letter stream with
/// `reason` and acknowledges it; the record of `order`, if given and still accepted, says
/// dead-lettered. `deliveries` is `None` when the entry was not retried (it can never parse).
pub fn dead_letter_entry_invocation<'a>(
    keys: &Keys,
    settler: &Settler<'_>,
    entry_id: &str,
    payload: &[u8],
    reason: &str,
    deliveries: Option<u64>,
    order: Option<&OrderId>,
) -> ScriptInvocation<'a> {
    let mut inv = DEAD_LETTER.prepare_invoke();
    inv.key(keys.stream()).key(keys.dead_letter());
    if let Some(order) = order {
        inv.key(keys.order(order));
    }
    inv.arg(CONSUMER_GROUP)
        .arg(entry_id)
        .arg(payload)
        .arg(reason)
        .arg(settler.consumer)
        .arg(deliveries.map(|n| n.to_string()).unwrap_or_default())
        .arg(settler.retention_ms)
        .arg(settler.dead_letter_maxlen);
    inv
}

/// Pub/Sub: one order whose apply Redis refused, and what Redis said.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub message: &'a OrderMessage,
    pub error: &'a str,
}

/// Pub/Sub: counts a batch's refused applies fleet-wide, dead-lettering the orders refused
/// `max_deliveries` times, in one script call.
pub fn refused_invocation<'a>(
    keys: &Keys,
    settler: &Settler<'_>,
    max_deliveries: u64,
    refusals: &[Refusal<'_>],
) -> ScriptInvocation<'a> {
    let mut inv = REFUSED.prepare_invoke();
    inv.key(keys.refusals())
        .key(keys.pending())
        .key(keys.dead_letter());
    inv.arg(settler.consumer)
        .arg(settler.retention_ms)
        .arg(settler.dead_letter_maxlen)
        .arg(max_deliveries);
    for refusal in refusals {
        let message = refusal.message;
        inv.key(keys.order(&message.order_id));
        inv.arg(message.order_id.as_str())
            .arg(message.id.as_str())
            .arg(message.to_json())
            .arg(refusal.error);
    }
    inv
}

/// What counting one refusal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalOutcome {
    /// Refused `count` times so far: it stays pending and is re-driven.
    Counted { count: u64 },
    /// Refused `count` times, the limit: it is in the dead-letter stream, and its record says so.
    DeadLettered { count: u64 },
    /// Its record is final or belongs to another event: nothing counted.
    Done,
    /// Redis refused to count this one (its count is not a number...): it stays pending.
    Failed { error: String },
}

/// The outcomes of a refusal count, in the order of the batch.
pub fn parse_refused_reply(
    reply: Value,
    orders: usize,
) -> Result<Vec<RefusalOutcome>, UnexpectedReply> {
    let parsed = redis::from_redis_value_ref::<Vec<String>>(&reply)
        .ok()
        .filter(|fields| fields.len() == orders * 2)
        .and_then(|fields| {
            fields
                .chunks(2)
                .map(|two| match (two[0].as_str(), two[1].parse::<u64>()) {
                    ("counted", Ok(count)) => Some(RefusalOutcome::Counted { count }),
                    ("dead-lettered", Ok(count)) => Some(RefusalOutcome::DeadLettered { count }),
                    ("done", _) => Some(RefusalOutcome::Done),
                    ("error", _) => Some(RefusalOutcome::Failed {
                        error: two[1].clone(),
                    }),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
        });
    parsed.ok_or(UnexpectedReply {
        script: "refused",
        reply,
    })
}

/// Replays the dead letter `entry_id` of order `order_id` (its payload's event `event_id`),
/// delivering the order again by `mode`.
pub fn replay_invocation<'a>(
    keys: &Keys,
    mode: DeliveryMode,
    entry_id: &str,
    order_id: &OrderId,
    event_id: &str,
) -> ScriptInvocation<'a> {
    let mut inv = REPLAY.prepare_invoke();
    inv.key(keys.dead_letter())
        .key(keys.stream())
        .key(keys.pending())
        .key(keys.refusals())
        .key(keys.order(order_id));
    inv.arg(mode.as_str())
        .arg(keys.channel().as_str())
        .arg(entry_id)
        .arg(order_id.as_str())
        .arg(event_id);
    inv
}

/// How replaying one dead letter ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Its record was dead-lettered: now accepted and delivered again; the dead letter is gone.
    Replayed,
    /// Its record was already `status` (replayed before): only the dead letter was deleted.
    AlreadyDone { status: String },
    /// No record of the order (never accepted, or expired): the dead letter is kept.
    NoRecord,
    /// The orderId belongs to event `owner`, not this payload's: the dead letter is kept.
    Conflict { owner: String },
    /// The dead letter was no longer there (replayed meanwhile).
    Gone,
}

pub fn parse_replay_reply(reply: Value) -> Result<ReplayOutcome, UnexpectedReply> {
    let parsed = redis::from_redis_value_ref::<(String, String)>(&reply)
        .ok()
        .and_then(|(outcome, detail)| match outcome.as_str() {
            "replayed" => Some(ReplayOutcome::Replayed),
            "done" => Some(ReplayOutcome::AlreadyDone { status: detail }),
            "missing" => Some(ReplayOutcome::NoRecord),
            "conflict" => Some(ReplayOutcome::Conflict { owner: detail }),
            "gone" => Some(ReplayOutcome::Gone),
            _ => None,
        });
    parsed.ok_or(UnexpectedReply {
        script: "replay",
        reply,
    })
}

/// How one accept ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted {
        id: String,
        at_ms: u64,
    },
    /// The orderId was seen before with the same items (a retry): its event id.
    Exists {
        id: String,
    },
    /// The orderId was seen before with other items: that order's event id.
    Conflict {
        id: String,
    },
    /// Redis refused this order (its record key is of the wrong type): nothing was written.
    Failed {
        error: String,
    },
}

/// The accept of a batch of orders in one script call (the order service's group commit).
pub fn accept_invocation<'a>(
    keys: &Keys,
    mode: DeliveryMode,
    messages: &[&OrderMessage],
) -> ScriptInvocation<'a> {
    let mut inv = ACCEPT.prepare_invoke();
    inv.key(keys.pending()).key(keys.stream());
    inv.arg(mode.as_str()).arg(keys.channel().as_str());
    for message in messages {
        inv.key(keys.order(&message.order_id));
        inv.arg(message.id.as_str())
            .arg(message.order_id.as_str())
            .arg(message.items.canonical_json())
            .arg(message.to_json());
    }
    inv
}

/// The outcomes of a batch accept, in the order of the batch.
pub fn parse_accept_reply(
    reply: Value,
    orders: usize,
) -> Result<Vec<AcceptOutcome>, UnexpectedReply> {
    per_order("accept", reply, orders, |[outcome, a, b]| {
        match outcome.as_str() {
            "accepted" => b
                .parse()
                .ok()
                .map(|at_ms| AcceptOutcome::Accepted { id: a, at_ms }),
            "exists" => Some(AcceptOutcome::Exists { id: a }),
            "conflict" => Some(AcceptOutcome::Conflict { id: a }),
            "error" => Some(AcceptOutcome::Failed { error: a }),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(parts: &[&str]) -> Value {
        Value::Array(
            parts
                .iter()
                .map(|p| Value::BulkString(p.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn parses_every_apply_outcome_in_batch_order() {
        let reply = bulk(&[
            "applied",
            "",
            "12",
            "rejected",
            "no stock",
            "13",
            "duplicate",
            "applied",
            "c-1",
            "error",
            "WRONGTYPE",
            "",
            "conflict",
            "e7",
            "",
        ]);
        assert_eq!(
            parse_apply_reply(reply, 5).unwrap(),
            [
                ApplyOutcome::Applied { at_ms: 12 },
                ApplyOutcome::Rejected {
                    reason: "no stock".into(),
                    at_ms: 13
                },
                ApplyOutcome::Duplicate {
                    status: "applied".into(),
                    by: "c-1".into()
                },
                ApplyOutcome::Failed {
                    error: "WRONGTYPE".into()
                },
                ApplyOutcome::Conflict { owner: "e7".into() },
            ]
        );
        assert!(
            parse_apply_reply(bulk(&["applied", "", "12"]), 2).is_err(),
            "count mismatch"
        );
        assert!(parse_apply_reply(bulk(&["weird", "", ""]), 1).is_err());
        assert!(parse_apply_reply(Value::Int(1), 1).is_err());
    }

    #[test]
    fn parses_refusal_and_replay_outcomes() {
        assert_eq!(
            parse_refused_reply(
                bulk(&[
                    "counted",
                    "1",
                    "dead-lettered",
                    "5",
                    "done",
                    "",
                    "error",
                    "ERR x"
                ]),
                4
            )
            .unwrap(),
            [
                RefusalOutcome::Counted { count: 1 },
                RefusalOutcome::DeadLettered { count: 5 },
                RefusalOutcome::Done,
                RefusalOutcome::Failed {
                    error: "ERR x".into()
                }
            ]
        );
        assert!(parse_refused_reply(bulk(&["counted", "x"]), 1).is_err());
        assert!(parse_refused_reply(bulk(&["counted", "1"]), 2).is_err());
        for (reply, want) in [
            (["replayed", ""], ReplayOutcome::Replayed),
            (
                ["done", "applied"],
                ReplayOutcome::AlreadyDone {
                    status: "applied".into(),
                },
            ),
            (["missing", ""], ReplayOutcome::NoRecord),
            (
                ["conflict", "e1"],
                ReplayOutcome::Conflict { owner: "e1".into() },
            ),
            (["gone", ""], ReplayOutcome::Gone),
        ] {
            assert_eq!(parse_replay_reply(bulk(&reply)).unwrap(), want);
        }
        assert!(parse_replay_reply(bulk(&["weird", ""])).is_err());
    }

    #[test]
    fn dead_lettering_scripts_carry_the_one_definition() {
        for script in [&*APPLY, &*DEAD_LETTER, &*REFUSED] {
            let code = script.get_hash();
            assert!(!code.is_empty());
        }
        assert!(
            dead_lettering!("lua/refused.lua").starts_with(include_str!("lua/dead_letter_lib.lua"))
        );
    }

    #[test]
    fn parses_every_accept_outcome_in_batch_order() {
        assert_eq!(
            parse_accept_reply(
                bulk(&[
                    "accepted",
                    "e1",
                    "99",
                    "exists",
                    "e0",
                    "",
                    "conflict",
                    "e2",
                    "",
                    "error",
                    "WRONGTYPE",
                    ""
                ]),
                4
            )
            .unwrap(),
            [
                AcceptOutcome::Accepted {
                    id: "e1".into(),
                    at_ms: 99
                },
                AcceptOutcome::Exists { id: "e0".into() },
                AcceptOutcome::Conflict { id: "e2".into() },
                AcceptOutcome::Failed {
                    error: "WRONGTYPE".into()
                },
            ]
        );
        assert!(parse_accept_reply(bulk(&["accepted", "e1", "x"]), 1).is_err());
        assert!(parse_accept_reply(bulk(&["accepted", "e1", "99"]), 2).is_err());
    }
}
