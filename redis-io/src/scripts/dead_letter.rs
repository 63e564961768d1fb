//! The dead-letter stream's two doors: a streams-mode entry that cannot be applied goes in
//! (`dead_letter.lua`), and an operator's replay takes one out and delivers its order again
//! (`replay.lua`).

use redis::{ScriptInvocation, Value};

use super::{DEAD_LETTER, REPLAY, Settler, UnexpectedReply};
use protocol::DeliveryMode;
use protocol::OrderMessage;
use protocol::keys::{CONSUMER_GROUP, Keys};
use protocol::order::OrderId;

/// Streams: moves the entry `entry_id` (carrying `payload`) to the dead-letter stream with
/// `reason` and acknowledges it; the record of `order` (the message it parsed to, if it did)
/// says dead-lettered, and is written so if it is missing. `deliveries` is `None` when the
/// entry was not retried (it can never parse).
pub fn dead_letter_entry_invocation<'a>(
    keys: &Keys,
    settler: &Settler<'_>,
    entry_id: &str,
    payload: &[u8],
    reason: &str,
    deliveries: Option<u64>,
    order: Option<&OrderMessage>,
) -> ScriptInvocation<'a> {
    let mut inv = DEAD_LETTER.prepare_invoke();
    inv.key(keys.stream()).key(keys.dead_letter());
    if let Some(order) = order {
        inv.key(keys.order(&order.order_id));
    }
    inv.arg(CONSUMER_GROUP)
        .arg(entry_id)
        .arg(payload)
        .arg(reason)
        .arg(settler.consumer)
        .arg(deliveries.map(|n| n.to_string()).unwrap_or_default())
        .arg(settler.retention_ms)
        .arg(settler.dead_letter_maxlen);
    if let Some(order) = order {
        inv.arg(order.id.as_str());
    }
    inv
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

#[cfg(test)]
mod tests {
    use super::super::bulk;
    use super::*;

    #[test]
    fn parses_every_replay_outcome() {
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
}
