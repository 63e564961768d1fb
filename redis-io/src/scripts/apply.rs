//! The consumer's side of settling orders: the batch apply (`apply.lua`) and, in pub/sub mode,
//! the fleet-wide count of applies Redis refused (`refused.lua`), which dead-letters an order
//! once it has been refused too often.

use redis::{ScriptInvocation, Value};

use super::{APPLY, REFUSED, Settler, UnexpectedReply, per_order};
use protocol::keys::Keys;
use protocol::message::OrderMessage;

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

#[cfg(test)]
mod tests {
    use super::super::bulk;
    use super::*;

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
    fn parses_every_refusal_outcome_in_batch_order() {
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
    }
}
