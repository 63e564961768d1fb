//! The order message on the wire: what the order service publishes (Pub/Sub) or appends (Streams)
//! and what consumers parse. It keeps the starting design's shape, `id` plus the order's fields,
//! so an existing subscriber keeps working, and consumers still accept that design's publishers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::order::{EventId, Items, OrderId, ValidationError, validate_lines};

/// Field of a stream entry that carries the message JSON.
pub const STREAM_FIELD: &str = "order";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderMessage {
    pub id: EventId,
    #[serde(rename = "orderId")]
    pub order_id: OrderId,
    pub items: Items,
}

/// Why a message was refused; counted, logged and (in streams mode) dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is not a JSON object: {0}")]
    NotJson(String),
    #[error("{field} must be a string or an integer")]
    WrongType { field: &'static str },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl MessageError {
    /// A short, bounded label for the `reason` of the invalid-message metric.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageError::NotJson(_) => "not_json",
            MessageError::WrongType { .. } => "wrong_type",
            MessageError::Invalid(ValidationError::Missing { .. }) => "missing_field",
            MessageError::Invalid(_) => "invalid_field",
        }
    }
}

/// Lenient on purpose: publishers of the starting design send `id` as a number (Date.now()) and
/// may add fields of their own; the strict rules apply to the values we act on.
#[derive(Deserialize)]
struct RawMessage {
    id: Option<Value>,
    #[serde(rename = "orderId")]
    order_id: Option<Value>,
    items: Option<Vec<RawLine>>,
}

#[derive(Deserialize)]
struct RawLine {
    id: Value,
    quantity: Value,
}

impl OrderMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an order message always serializes")
    }

    pub fn parse(payload: &[u8]) -> Result<Self, MessageError> {
        let raw: RawMessage =
            serde_json::from_slice(payload).map_err(|e| MessageError::NotJson(e.to_string()))?;
        let id = scalar_text("id", raw.id)?.ok_or(missing("id"))?;
        let id = EventId::parse("id", &id)?;
        // A starting-design message may lack orderId: its event id is then its identity too.
        let order_id = match scalar_text("orderId", raw.order_id)? {
            Some(text) => OrderId::parse("orderId", &text)?,
            None => OrderId::parse("orderId", id.as_str())?,
        };
        let raw_lines = raw.items.ok_or(missing("items"))?;
        let mut lines = Vec::with_capacity(raw_lines.len());
        for (i, line) in raw_lines.into_iter().enumerate() {
            let id = scalar_text("items[].id", Some(line.id))?.unwrap_or_default();
            let quantity = line
                .quantity
                .as_u64()
                .ok_or_else(|| ValidationError::BadQuantity {
                    field: format!("items[{i}].quantity"),
                    got: line.quantity.to_string(),
                })?;
            lines.push((id, quantity));
        }
        let items = validate_lines(lines.iter().map(|(id, q)| (id.as_str(), *q)))?;
        Ok(OrderMessage {
            id,
            order_id,
            items,
        })
    }
}

fn missing(field: &str) -> MessageError {
    MessageError::Invalid(ValidationError::Missing {
        field: field.to_owned(),
    })
}

/// Ids may be strings or integers on the wire; both become text.
fn scalar_text(field: &'static str, value: Option<Value>) -> Result<Option<String>, MessageError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(MessageError::WrongType { field }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_what_the_order_service_publishes() {
        let msg = OrderMessage {
            id: EventId::new_v7(),
            order_id: OrderId::parse("orderId", "29").unwrap(),
            items: validate_lines([("001", 2u64), ("002", 1)].into_iter()).unwrap(),
        };
        let json = msg.to_json();
        assert!(json.starts_with(r#"{"id":""#), "{json}");
        assert!(
            json.contains(r#""orderId":"29","items":[{"id":"001","quantity":2}"#),
            "{json}"
        );
        assert_eq!(OrderMessage::parse(json.as_bytes()).unwrap(), msg);
    }

    #[test]
    fn accepts_the_starting_designs_raw_publish() {
        let msg = OrderMessage::parse(
            br#"{"id":1732700000123,"orderId":29,"items":[{"id":"001","quantity":2}],"note":"x"}"#,
        )
        .unwrap();
        assert_eq!(msg.id.as_str(), "1732700000123");
        assert_eq!(msg.order_id.as_str(), "29");
        let msg = OrderMessage::parse(br#"{"id":"7","items":[{"id":"a","quantity":1}]}"#).unwrap();
        assert_eq!(msg.order_id.as_str(), "7");
    }

    #[test]
    fn malformed_messages_say_why() {
        let cases: [(&[u8], &str); 7] = [
            (b"not json", "message is not a JSON object"),
            (b"[1,2]", "message is not a JSON object"),
            (br#"{"items":[{"id":"a","quantity":1}]}"#, "id is required"),
            (br#"{"id":"x"}"#, "items is required"),
            (
                br#"{"id":{"a":1},"items":[]}"#,
                "id must be a string or an integer",
            ),
            (
                br#"{"id":"x","items":[{"id":"a","quantity":-1}]}"#,
                "items[0].quantity must be",
            ),
            (
                br#"{"id":"x","items":[{"id":"a b","quantity":1}]}"#,
                "items[0].id must be",
            ),
        ];
        for (payload, want) in cases {
            let err = OrderMessage::parse(payload).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "{}: {err}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
