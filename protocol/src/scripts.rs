//! The Lua scripts both deployables run, with pure builders for their invocations and parsers for
//! their replies. Scripts are sent by SHA; after a Redis restart empties the script cache,
//! [`load_all`] puts them back (callers retry once on `NOSCRIPT`).

use std::sync::LazyLock;

use redis::{ErrorKind, RedisError, ScriptInvocation, ServerErrorKind, Value};

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

/// Loads every script, for pipelines that send `EVALSHA` without the load-and-retry of
/// `ScriptInvocation::invoke_async`.
pub async fn load_all(conn: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for script in [&*ACCEPT, &*APPLY, &*RELEASE, &*DEAD_LETTER] {
        pipe.load_script(script).ignore();
    }
    pipe.query_async(conn).await
}

pub fn is_noscript(err: &RedisError) -> bool {
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

/// The stream entry an apply settles (acknowledges and deletes) in the same atomic step.
#[derive(Debug, Clone, Copy)]
pub struct StreamEntry<'a> {
    pub group: &'a str,
    pub entry_id: &'a str,
}

/// The apply of one order; `entry` is `None` for Pub/Sub deliveries and re-drives.
pub fn apply_invocation<'a>(
    keys: &Keys,
    message: &OrderMessage,
    consumer: &str,
    retention_ms: u64,
    entry: Option<StreamEntry<'_>>,
) -> ScriptInvocation<'a> {
    let mut inv = APPLY.prepare_invoke();
    inv.key(keys.order(&message.id))
        .key(keys.inventory())
        .key(keys.pending())
        .key(keys.stream())
        .key(keys.order_id(&message.order_id));
    let (group, entry_id) = entry.map_or(("", ""), |e| (e.group, e.entry_id));
    inv.arg(message.id.as_str())
        .arg(consumer)
        .arg(retention_ms)
        .arg(group)
        .arg(entry_id)
        .arg(message.order_id.as_str())
        .arg(message.to_json());
    for (item, quantity) in message.items.totals() {
        inv.arg(item.as_str()).arg(quantity);
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
}

impl ApplyOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ApplyOutcome::Applied { .. } => "applied",
            ApplyOutcome::Rejected { .. } => "rejected",
            ApplyOutcome::Duplicate { .. } => "duplicate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from the {script} script: {reply:?}")]
pub struct UnexpectedReply {
    pub script: &'static str,
    pub reply: Value,
}

fn strings(script: &'static str, reply: Value) -> Result<Vec<String>, UnexpectedReply> {
    redis::from_redis_value::<Vec<String>>(reply.clone())
        .map_err(|_| UnexpectedReply { script, reply })
}

pub fn parse_apply_reply(reply: Value) -> Result<ApplyOutcome, UnexpectedReply> {
    let fields = strings("apply", reply.clone())?;
    let ms = |s: &str| s.parse::<u64>().ok();
    match fields.as_slice() {
        [o, _, at] if o == "applied" => ms(at).map(|at_ms| ApplyOutcome::Applied { at_ms }),
        [o, reason, at] if o == "rejected" => ms(at).map(|at_ms| ApplyOutcome::Rejected {
            reason: reason.clone(),
            at_ms,
        }),
        [o, status, by] if o == "duplicate" => Some(ApplyOutcome::Duplicate {
            status: status.clone(),
            by: by.clone(),
        }),
        _ => None,
    }
    .ok_or(UnexpectedReply {
        script: "apply",
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
    /// The orderId was seen before: its event id and canonical items.
    Exists {
        id: String,
        items: String,
    },
}

pub fn parse_accept_reply(reply: Value) -> Result<AcceptOutcome, UnexpectedReply> {
    let fields = strings("accept", reply.clone())?;
    match fields.as_slice() {
        [o, id, at] if o == "accepted" => at.parse().ok().map(|at_ms| AcceptOutcome::Accepted {
            id: id.clone(),
            at_ms,
        }),
        [o, id, items] if o == "exists" => Some(AcceptOutcome::Exists {
            id: id.clone(),
            items: items.clone(),
        }),
        _ => None,
    }
    .ok_or(UnexpectedReply {
        script: "accept",
        reply,
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
    fn parses_every_apply_reply() {
        assert_eq!(
            parse_apply_reply(bulk(&["applied", "", "12"])).unwrap(),
            ApplyOutcome::Applied { at_ms: 12 }
        );
        assert_eq!(
            parse_apply_reply(bulk(&["rejected", "no stock", "13"])).unwrap(),
            ApplyOutcome::Rejected {
                reason: "no stock".into(),
                at_ms: 13
            }
        );
        assert_eq!(
            parse_apply_reply(bulk(&["duplicate", "applied", "c-1"])).unwrap(),
            ApplyOutcome::Duplicate {
                status: "applied".into(),
                by: "c-1".into()
            }
        );
        assert!(parse_apply_reply(bulk(&["weird"])).is_err());
        assert!(parse_apply_reply(Value::Int(1)).is_err());
    }

    #[test]
    fn parses_every_accept_reply() {
        assert_eq!(
            parse_accept_reply(bulk(&["accepted", "e1", "99"])).unwrap(),
            AcceptOutcome::Accepted {
                id: "e1".into(),
                at_ms: 99
            }
        );
        assert_eq!(
            parse_accept_reply(bulk(&["exists", "e0", "[]"])).unwrap(),
            AcceptOutcome::Exists {
                id: "e0".into(),
                items: "[]".into()
            }
        );
        assert!(parse_accept_reply(bulk(&["accepted", "e1", "x"])).is_err());
    }
}
