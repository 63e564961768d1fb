//! Running the Lua scripts of `protocol::lua`: pure builders for their invocations and parsers
//! for their replies, a file per side: `accept` (the order service), `apply` (the consumer settling
//! orders), `dead_letter` (into and out of the dead-letter stream). Scripts are sent by SHA;
//! after a Redis restart empties the script cache, [`load_all`] puts them back (callers retry
//! once on `NOSCRIPT`).

use std::sync::LazyLock;

use protocol::lua;
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

mod accept;
mod apply;
mod dead_letter;

pub use accept::{AcceptOutcome, accept_invocation, parse_accept_reply};
pub use apply::{
    ApplyItem, ApplyOutcome, Refusal, RefusalOutcome, apply_invocation, parse_apply_reply,
    parse_refused_reply, refused_invocation,
};
pub use dead_letter::{
    ReplayOutcome, dead_letter_entry_invocation, parse_replay_reply, replay_invocation,
};

pub static ACCEPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(lua::ACCEPT));
pub static APPLY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(lua::APPLY));
pub static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(lua::RELEASE));
pub static DEAD_LETTER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(lua::DEAD_LETTER));
pub static REFUSED: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(lua::REFUSED));
pub static REPLAY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(lua::REPLAY));
pub static FORGET_CONSUMERS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(lua::FORGET_CONSUMERS));

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

/// A reply of bulk strings, as the scripts give; for the parsers' tests in every submodule.
#[cfg(test)]
fn bulk(parts: &[&str]) -> Value {
    Value::Array(
        parts
            .iter()
            .map(|p| Value::BulkString(p.as_bytes().to_vec()))
            .collect(),
    )
}
