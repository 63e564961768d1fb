//! One dead letter: reading it from its stream entry and showing it, as a line of text or a JSON
//! object, with the time in UTC so a list reads without a conversion tool.

use std::collections::HashMap;

use protocol::message::{OrderMessage, STREAM_FIELD};
use serde_json::json;

/// One entry of the dead-letter stream, as the dead-lettering scripts write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (what a replay deletes).
    pub id: String,
    /// The stream entry it came from; empty for a pubsub order.
    pub source_entry: String,
    /// The payload as it arrived.
    pub payload: Vec<u8>,
    pub reason: String,
    pub consumer: String,
    /// How many deliveries were refused; `None` for one never retried (it could not be parsed,
    /// or its orderId belongs to another event).
    pub deliveries: Option<u64>,
}

impl DeadLetter {
    pub fn from_fields(id: &str, mut fields: HashMap<String, Vec<u8>>) -> DeadLetter {
        let mut text = |name: &str| {
            String::from_utf8_lossy(&fields.remove(name).unwrap_or_default()).into_owned()
        };
        DeadLetter {
            id: id.to_owned(),
            source_entry: text("entry"),
            reason: text("reason"),
            consumer: text("consumer"),
            deliveries: text("deliveries").parse().ok(),
            payload: fields.remove(STREAM_FIELD).unwrap_or_default(),
        }
    }

    /// The order it carries, or why it carries none.
    pub fn order(&self) -> Result<OrderMessage, String> {
        OrderMessage::parse(&self.payload).map_err(|e| format!("its payload is not an order: {e}"))
    }

    /// When it was dead-lettered: the time part of its stream id (Redis' clock, ms).
    pub fn time_ms(&self) -> Option<u64> {
        self.id.split_once('-')?.0.parse().ok()
    }

    /// One line for `list`.
    pub fn line(&self) -> String {
        let order_id = self.order().map(|m| m.order_id.to_string());
        format!(
            "{id}  order={order}  time={time}  consumer={consumer}  deliveries={deliveries}  reason={reason}",
            id = self.id,
            order = order_id.as_deref().unwrap_or("-"),
            time = self.time_ms().map(utc_timestamp).unwrap_or_default(),
            consumer = self.consumer,
            deliveries = self.deliveries.map_or("-".to_owned(), |n| n.to_string()),
            reason = self.reason,
        )
    }

    /// One JSON object for `list --json`, which prints one per line (JSON Lines): a list can be
    /// read and shown a page at a time, never held whole.
    pub fn json(&self) -> serde_json::Value {
        let order = self.order().ok();
        json!({
            "id": self.id,
            "orderId": order.as_ref().map(|m| m.order_id.as_str()),
            "eventId": order.as_ref().map(|m| m.id.as_str()),
            "reason": self.reason,
            "consumer": self.consumer,
            "deliveries": self.deliveries,
            "timeMs": self.time_ms(),
            "time": self.time_ms().map(utc_timestamp),
            "sourceEntry": (!self.source_entry.is_empty()).then_some(&self.source_entry),
            "payload": String::from_utf8_lossy(&self.payload),
        })
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (days to a civil date: Howard Hinnant's
/// algorithm), so a list reads without a conversion tool.
pub fn utc_timestamp(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// A dead letter as the dead-lettering scripts write it, for the tests of this module and its
/// siblings.
#[cfg(test)]
pub(super) fn test_letter(id: &str, payload: &str) -> DeadLetter {
    let fields: HashMap<String, Vec<u8>> = [
        ("entry", ""),
        ("order", payload),
        ("reason", "apply failed after 5 deliveries: boom"),
        ("consumer", "c-0"),
        ("deliveries", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
    .collect();
    DeadLetter::from_fields(id, fields)
}

/// The payload of an order `order_id` of event `e-<order_id>`.
#[cfg(test)]
pub(super) fn order_json(order_id: &str) -> String {
    format!(r#"{{"id":"e-{order_id}","orderId":"{order_id}","items":[{{"id":"a","quantity":1}}]}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_dead_letter_and_shows_it() {
        let l = test_letter("1700000000123-0", &order_json("o1"));
        assert_eq!(l.deliveries, Some(5));
        assert_eq!(l.time_ms(), Some(1_700_000_000_123));
        let line = l.line();
        assert!(
            line.contains("order=o1") && line.contains("reason=apply failed"),
            "{line}"
        );
        assert!(line.contains("time=2023-11-14T22:13:20.123Z"), "{line}");
        let json = l.json();
        assert_eq!(json["orderId"], "o1");
        assert_eq!(json["deliveries"], 5);
        assert_eq!(json["sourceEntry"], serde_json::Value::Null);
        let bad = test_letter("1-0", "not\njson");
        assert!(bad.line().contains("order=-"));
        assert_eq!(bad.json()["orderId"], serde_json::Value::Null);
        assert!(
            !bad.json().to_string().contains('\n'),
            "one object per line, whatever the payload"
        );
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_timestamp(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
