//! The durable record of one order as stored in its hash (keyed by orderId, see
//! `Keys::order`): written by the accept and apply scripts, read by the order service
//! (`GET /orders/..`) and by the consumers' re-drive.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Applied,
    Rejected,
    /// Streams mode: Redis refused its apply `MAX_DELIVERIES` times; the entry is in the
    /// dead-letter stream and nothing was taken.
    #[serde(rename = "dead-lettered")]
    DeadLettered,
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
        let status = match hash.get(field::STATUS)?.as_str() {
            "applied" => Status::Applied,
            "rejected" => Status::Rejected,
            "dead-lettered" => Status::DeadLettered,
            _ => Status::Accepted,
        };
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
