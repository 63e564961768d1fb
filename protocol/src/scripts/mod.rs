//! The Lua scripts both deployables run, with pure builders for their invocations and parsers for
//! their replies, a file per side: `accept` (the order service), `apply` (the consumer settling
//! orders), `dead_letter` (into and out of the dead-letter stream). Scripts are sent by SHA;
//! after a Redis restart empties the script cache, [`load_all`] puts them back (callers retry
//! once on `NOSCRIPT`).

use std::sync::LazyLock;

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

/// A script that writes orders, with what such scripts share in front of it (Redis scripts
/// cannot import one another).
macro_rules! with_common {
    ($file:literal) => {
        concat!(include_str!("../lua/common_lib.lua"), include_str!($file))
    };
}

/// A script that dead-letters orders, with the one definition of doing so in front of it.
macro_rules! dead_lettering {
    ($file:literal) => {
        concat!(
            include_str!("../lua/common_lib.lua"),
            include_str!("../lua/dead_letter_lib.lua"),
            include_str!($file)
        )
    };
}

pub static ACCEPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(with_common!("../lua/accept.lua")));
pub static APPLY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(dead_lettering!("../lua/apply.lua")));
pub static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/release.lua")));
pub static DEAD_LETTER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(dead_lettering!("../lua/dead_letter.lua")));
pub static REFUSED: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(dead_lettering!("../lua/refused.lua")));
pub static REPLAY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(with_common!("../lua/replay.lua")));
pub static FORGET_CONSUMERS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/forget_consumers.lua")));

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_that_write_orders_carry_the_shared_definitions() {
        let common = include_str!("../lua/common_lib.lua");
        let dead_letter = include_str!("../lua/dead_letter_lib.lua");
        let built = |parts: &[&str]| redis::Script::new(&parts.concat()).get_hash().to_owned();
        for (script, file) in [
            (&*ACCEPT, include_str!("../lua/accept.lua")),
            (&*REPLAY, include_str!("../lua/replay.lua")),
        ] {
            assert_eq!(script.get_hash(), built(&[common, file]));
        }
        for (script, file) in [
            (&*APPLY, include_str!("../lua/apply.lua")),
            (&*DEAD_LETTER, include_str!("../lua/dead_letter.lua")),
            (&*REFUSED, include_str!("../lua/refused.lua")),
        ] {
            assert_eq!(script.get_hash(), built(&[common, dead_letter, file]));
        }
    }
}
