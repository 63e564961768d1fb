//! The order service's side: accepting a batch of orders in one script call (`accept.lua`), the
//! group commit's one round trip.

use redis::{ScriptInvocation, Value};

use super::{ACCEPT, UnexpectedReply, per_order};
use protocol::DeliveryMode;
use protocol::keys::Keys;
use protocol::message::OrderMessage;

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
    use super::super::bulk;
    use super::*;

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
