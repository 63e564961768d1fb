//! The durable record of one order as stored in its hash (keyed by orderId, see
//! `Keys::order`): written by the scripts in `lua/`, read by the order service
//! (`GET /orders/..`), the consumers' re-drive and the dead-letter tools.
//!
//! Its `status` follows one state machine, which every script that writes it obeys:
//!
//! ```text
//!                   apply: every line in stock
//!            +-----------------------------------------> applied        (final)
//!            |      apply: short of stock for a line
//!  accepted -+-----------------------------------------> rejected       (final)
//!     ^      |      Redis refused the apply MAX_DELIVERIES times
//!     |      +-----------------------------------------> dead-lettered  (final for every
//!     |                                                      |           delivery)
//!     +------------ replay: delivered again -----------------+
//! ```
//!
//! `accept.lua` creates a record as `accepted`; `apply.lua` moves it to `applied` or `rejected`;
//! `dead_letter.lua` and `refused.lua` move it to `dead-lettered`; `replay.lua` moves a
//! dead-lettered one back to `accepted` and delivers it again. An order from a starting-design
//! publisher has no record until it ends, so its first record is already `applied`,
//! `rejected` or `dead-lettered`, as if it had been accepted just before. A delivery of an order whose
//! record is final changes nothing (it is a duplicate), so a late or replayed delivery never
//! turns a dead-lettered order into an applied one behind the operator's back.

use std::collections::HashMap;

use serde::Serialize;

/// Hash fields, named once for the Rust side (the Lua scripts use the same literals).
pub mod field {
    pub const ID: &str = "id";
    pub const ITEMS: &str = "items";
    pub const MESSAGE: &str = "message";
    pub const STATUS: &str = "status";
    pub const ACCEPTED_AT: &str = "acceptedAt";
    pub const CONSUMER: &str = "consumer";
    pub const DONE_AT: &str = "doneAt";
    pub const REASON: &str = "reason";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded and delivered, not yet done.
    Accepted,
    /// Every line taken from stock.
    Applied,
    /// Short of stock for some line: nothing taken.
    Rejected,
    /// Redis refused its apply `MAX_DELIVERIES` times (either delivery mode): its payload is in
    /// the dead-letter stream and nothing was taken.
    #[serde(rename = "dead-lettered")]
    DeadLettered,
}

/// Why a record changes status: the only moves there are (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Apply,
    Reject,
    DeadLetter,
    Replay,
}

/// The state machine, in one table: (from, by, to). Anything not listed never happens.
pub const TRANSITIONS: [(Status, Transition, Status); 4] = [
    (Status::Accepted, Transition::Apply, Status::Applied),
    (Status::Accepted, Transition::Reject, Status::Rejected),
    (
        Status::Accepted,
        Transition::DeadLetter,
        Status::DeadLettered,
    ),
    (Status::DeadLettered, Transition::Replay, Status::Accepted),
];

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Accepted,
        Status::Applied,
        Status::Rejected,
        Status::DeadLettered,
    ];

    /// The name stored in the record's `status` field and shown by `GET /orders/{orderId}`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Applied => "applied",
            Status::Rejected => "rejected",
            Status::DeadLettered => "dead-lettered",
        }
    }

    /// The status stored as `name`; `None` for a name no script writes.
    pub fn from_wire(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a record in this status may move to `next` (by any transition).
    pub fn can_become(self, next: Status) -> bool {
        TRANSITIONS
            .iter()
            .any(|&(from, _, to)| from == self && to == next)
    }

    /// Where `transition` takes a record in this status; `None` when it does not apply.
    pub fn after(self, transition: Transition) -> Option<Status> {
        TRANSITIONS
            .iter()
            .find(|&&(from, by, _)| from == self && by == transition)
            .map(|&(_, _, to)| to)
    }

    /// Done as far as any delivery is concerned: applying it again changes nothing.
    pub fn is_final(self) -> bool {
        self.after(Transition::Apply).is_none()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `GET /orders/{orderId}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    pub id: String,
    pub order_id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip)]
    pub message: Option<String>,
}

impl OrderRecord {
    /// The record of `order_id`; `None` when the hash is empty (no such order, or its
    /// retention ran out).
    pub fn from_hash(order_id: &str, mut hash: HashMap<String, String>) -> Option<Self> {
        // A status no script writes (edited by hand) reads as not done: the order is still owed.
        let status = Status::from_wire(hash.get(field::STATUS)?).unwrap_or(Status::Accepted);
        let ms = |h: &HashMap<String, String>, f: &str| h.get(f).and_then(|v| v.parse().ok());
        Some(OrderRecord {
            id: hash.remove(field::ID).unwrap_or_default(),
            accepted_at_ms: ms(&hash, field::ACCEPTED_AT),
            done_at_ms: ms(&hash, field::DONE_AT),
            order_id: order_id.to_owned(),
            status,
            consumer: hash.remove(field::CONSUMER),
            reason: hash.remove(field::REASON),
            message: hash.remove(field::MESSAGE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_is_exactly_the_documented_one() {
        use Status::*;
        let allowed = [
            (Accepted, Applied),
            (Accepted, Rejected),
            (Accepted, DeadLettered),
            (DeadLettered, Accepted),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        let finals: Vec<Status> = Status::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [Applied, Rejected, DeadLettered]);
        assert_eq!(DeadLettered.after(Transition::Replay), Some(Accepted));
        assert_eq!(
            Applied.after(Transition::Replay),
            None,
            "only a dead letter is replayed"
        );
    }

    #[test]
    fn wire_names_round_trip_and_match_serde() {
        for status in Status::ALL {
            assert_eq!(Status::from_wire(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        assert_eq!(Status::from_wire("dead_lettered"), None);
    }

    /// Every quoted literal a script compares a status with, writes as one (`'status', '..'`),
    /// or assigns to a variable named `status`.
    fn status_literals(script: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in script.lines().filter(|l| !l.trim_start().starts_with("--")) {
            let quoted: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
            let mut rest = line;
            while let Some(at) = rest.find("status") {
                let after = &rest[at + "status".len()..];
                // `'status', 'x'` (a write), `status == 'x'` / `status ~= 'x'` (a test).
                // (A read, `HMGET(k, 'status', 'consumer')`, lists field names instead.)
                let write = after
                    .strip_prefix("', '")
                    .filter(|_| !line.contains("'HMGET'"));
                let tail = write
                    .or_else(|| after.strip_prefix(" == '"))
                    .or_else(|| after.strip_prefix(" ~= '"));
                if let Some(lit) = tail.and_then(|t| t.split('\'').next()) {
                    found.push(lit.to_owned());
                }
                rest = after;
            }
            // `local new_status = a and 'x' or 'y'`: every literal on the line is a status
            // (but not in `local status = redis.call('HGET', ...)`, a read).
            let assigned = line
                .trim_start()
                .strip_prefix("local ")
                .and_then(|l| l.split_once(" = "))
                .is_some_and(|(name, value)| {
                    name.contains("status") && !value.contains("redis.call")
                });
            if assigned {
                found.extend(quoted.iter().map(|s| s.to_string()));
            }
        }
        found
    }

    /// apply.lua decides "done before" with one condition over the status: it must name exactly
    /// the statuses this machine calls final, or a delivery could move a final record.
    #[test]
    fn apply_treats_exactly_the_final_statuses_as_done() {
        let condition = include_str!("lua/apply.lua")
            .lines()
            .find(|l| l.trim_start().starts_with("if status == "))
            .expect("apply.lua tests the record's status in one `if status == ...` line");
        let named: std::collections::BTreeSet<&str> =
            condition.split('\'').skip(1).step_by(2).collect();
        let finals: std::collections::BTreeSet<&str> = Status::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(named, finals, "{condition}");
    }

    #[test]
    fn the_readme_shows_this_state_machine() {
        let doc: String = include_str!("record.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| {
                l.strip_prefix("//! ")
                    .unwrap_or(l.trim_start_matches("//!"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let diagram = doc
            .split("```text\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("the module doc draws the state machine");
        assert!(
            include_str!("../../README.md").contains(diagram),
            "README.md's state machine differs from record.rs's:\n{diagram}"
        );
    }

    #[test]
    fn every_status_the_scripts_write_or_test_is_a_wire_name() {
        let scripts = [
            ("accept.lua", include_str!("lua/accept.lua")),
            ("apply.lua", include_str!("lua/apply.lua")),
            ("dead_letter.lua", include_str!("lua/dead_letter.lua")),
            (
                "dead_letter_lib.lua",
                include_str!("lua/dead_letter_lib.lua"),
            ),
            ("refused.lua", include_str!("lua/refused.lua")),
            ("replay.lua", include_str!("lua/replay.lua")),
        ];
        let mut seen = std::collections::HashSet::new();
        for (name, script) in scripts {
            for literal in status_literals(script) {
                let status = Status::from_wire(&literal)
                    .unwrap_or_else(|| panic!("{name} uses status {literal:?}, not a Status"));
                seen.insert(status);
            }
        }
        // The scan is not vacuous: between them the scripts use every status.
        assert_eq!(seen.len(), Status::ALL.len(), "{seen:?}");
        assert_eq!(status_literals("if status == 'x' then"), ["x"]);
        assert_eq!(status_literals("HSET(k, 'status', 'y', 'a', 'b')"), ["y"]);
        assert_eq!(
            status_literals("local new_status = a and 'p' or 'q'"),
            ["p", "q"]
        );
    }

    #[test]
    fn reads_an_applied_record_and_an_absent_one() {
        let hash: HashMap<String, String> = [
            ("id", "e1"),
            ("status", "applied"),
            ("acceptedAt", "10"),
            ("doneAt", "12"),
            ("consumer", "c-0"),
            ("message", "{}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let rec = OrderRecord::from_hash("29", hash).unwrap();
        assert_eq!(rec.status, Status::Applied);
        assert_eq!((rec.id.as_str(), rec.order_id.as_str()), ("e1", "29"));
        assert_eq!((rec.accepted_at_ms, rec.done_at_ms), (Some(10), Some(12)));
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["status"], "applied");
        assert_eq!(json["consumer"], "c-0");
        assert!(json.get("message").is_none());
        assert_eq!(OrderRecord::from_hash("29", HashMap::new()), None);
        let dead: HashMap<String, String> = [("id", "e2"), ("status", "dead-lettered")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let rec = OrderRecord::from_hash("30", dead).unwrap();
        assert_eq!(rec.status, Status::DeadLettered);
        assert_eq!(
            serde_json::to_value(&rec).unwrap()["status"],
            "dead-lettered"
        );
    }
}
