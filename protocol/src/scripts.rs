//! The Lua scripts both deployables run, with pure builders for their invocations and parsers for
//! their replies. Scripts are sent by SHA; after a Redis restart empties the script cache,
//! [`load_all`] puts them back (callers retry once on `NOSCRIPT`).

use std::sync::LazyLock;

use redis::{ErrorKind, RedisError, ScriptInvocation, ServerErrorKind, Value};

use crate::DeliveryMode;
use crate::keys::Keys;
use crate::message::OrderMessage;

pub static ACCEPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/accept.lua")));
pub static APPLY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/apply.lua")));
pub static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/release.lua")));
pub static DEAD_LETTER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/dead_letter.lua")));
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

/// The apply of a batch of orders in one script call; `group` is the consumer group when the
/// orders came from the stream.
pub fn apply_invocation<'a>(
    keys: &Keys,
    consumer: &str,
    retention_ms: u64,
    group: Option<&str>,
    orders: &[ApplyItem<'_>],
) -> ScriptInvocation<'a> {
    let mut inv = APPLY.prepare_invoke();
    inv.key(keys.inventory())
        .key(keys.pending())
        .key(keys.stream())
        .key(keys.dead_letter());
    inv.arg(consumer).arg(retention_ms).arg(group.unwrap_or(""));
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
