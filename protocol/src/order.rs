//! The order as the order service accepts it: validated types whose constructors are the only
//! way in, so every later stage (key layout, apply script, message) can trust its values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bounds from the HTTP contract; the message parser applies the same ones.
pub const MAX_ID_LEN: usize = 64;
pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: u64 = 1_000_000;

/// Why a field was refused. Every message names the field and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{field} must be 1 to {MAX_ID_LEN} characters of [A-Za-z0-9._-], got {got:?}")]
    BadId { field: String, got: String },
    #[error("{field} must be an integer from 1 to {MAX_QUANTITY}, got {got}")]
    BadQuantity { field: String, got: String },
    #[error("items must hold 1 to {MAX_ITEMS} lines, got {0}")]
    ItemCount(usize),
    #[error("{field} is required")]
    Missing { field: String },
}

fn is_valid_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// `field` names the input in the error (`orderId`, `items[2].id`, ...).
            pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
                if is_valid_id(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(ValidationError::BadId { field: field.to_owned(), got: truncate(value) })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The client's order id: what makes a retry idempotent.
    OrderId
);
identifier!(
    /// An inventory item (SKU).
    ItemId
);
identifier!(
    /// The id of one accepted order event: a UUIDv7 from the order service, or whatever id a
    /// starting-design publisher put in its message. The apply is idempotent on this id.
    EventId
);

impl EventId {
    /// A fresh time-ordered id: unique even for many orders in one millisecond (hole 5).
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

/// Long ids in error messages are cut so a hostile body cannot blow up the logs.
fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(field: &str, value: u64) -> Result<Self, ValidationError> {
        if (1..=MAX_QUANTITY).contains(&value) {
            Ok(Self(value as u32))
        } else {
            Err(ValidationError::BadQuantity {
                field: field.to_owned(),
                got: value.to_string(),
            })
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    pub id: ItemId,
    pub quantity: Quantity,
}

/// 1 to 100 lines, as sent. Lines for the same item are allowed; the apply sums them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Items(Vec<OrderLine>);

impl Items {
    pub fn new(lines: Vec<OrderLine>) -> Result<Self, ValidationError> {
        if (1..=MAX_ITEMS).contains(&lines.len()) {
            Ok(Self(lines))
        } else {
            Err(ValidationError::ItemCount(lines.len()))
        }
    }

    pub fn lines(&self) -> &[OrderLine] {
        &self.0
    }

    /// Quantity per item, lines for one item summed; the order of keys is stable.
    pub fn totals(&self) -> BTreeMap<&ItemId, u64> {
        let mut totals = BTreeMap::new();
        for line in &self.0 {
            *totals.entry(&line.id).or_insert(0) += u64::from(line.quantity.get());
        }
        totals
    }

    /// A form in which two requests for the same goods compare equal whatever their line
    /// order: the idempotency check compares this.
    pub fn canonical_json(&self) -> String {
        let totals: Vec<(&str, u64)> = self
            .totals()
            .into_iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        serde_json::to_string(&totals).expect("a list of (string, integer) always serializes")
    }
}

/// The order body of `POST /orders` as it arrives; [`OrderRequest::validate`] is the only way to
/// an [`Order`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderRequest {
    #[serde(default)]
    pub order_id: Option<String>,
    pub items: Vec<LineRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub id: String,
    pub quantity: u64,
}

/// A validated order, not yet given an event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: Option<OrderId>,
    pub items: Items,
}

impl OrderRequest {
    pub fn validate(self) -> Result<Order, ValidationError> {
        let order_id = self
            .order_id
            .as_deref()
            .map(|id| OrderId::parse("orderId", id))
            .transpose()?;
        let items = validate_lines(self.items.iter().map(|l| (l.id.as_str(), l.quantity)))?;
        Ok(Order { order_id, items })
    }
}

/// Shared by the HTTP body and the message parser so both enforce the same rules.
pub fn validate_lines<'a>(
    lines: impl ExactSizeIterator<Item = (&'a str, u64)>,
) -> Result<Items, ValidationError> {
    if !(1..=MAX_ITEMS).contains(&lines.len()) {
        return Err(ValidationError::ItemCount(lines.len()));
    }
    let lines = lines
        .enumerate()
        .map(|(i, (id, quantity))| {
            Ok(OrderLine {
                id: ItemId::parse(&format!("items[{i}].id"), id)?,
                quantity: Quantity::new(&format!("items[{i}].quantity"), quantity)?,
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    Items::new(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<Order, ValidationError> {
        serde_json::from_str::<OrderRequest>(json)
            .expect("test bodies are well-formed")
            .validate()
    }

    #[test]
    fn accepts_the_starting_designs_body() {
        let order = request(
            r#"{"orderId":"29","items":[{"id":"001","quantity":2},{"id":"002","quantity":1}]}"#,
        )
        .unwrap();
        assert_eq!(order.order_id.unwrap().as_str(), "29");
        assert_eq!(order.items.lines().len(), 2);
    }

    #[test]
    fn order_id_is_optional() {
        assert_eq!(
            request(r#"{"items":[{"id":"a","quantity":1}]}"#)
                .unwrap()
                .order_id,
            None
        );
    }

    #[test]
    fn ids_follow_the_character_and_length_rules() {
        for ok in ["a", "A-z_0.9", &"x".repeat(64)] {
            assert!(ItemId::parse("id", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ü", "{tag}", &"x".repeat(65)] {
            let err = ItemId::parse("items[0].id", bad).unwrap_err();
            assert!(
                err.to_string().starts_with("items[0].id must be 1 to 64"),
                "{err}"
            );
        }
    }

    #[test]
    fn errors_name_the_field() {
        let err = request(r#"{"orderId":"bad id","items":[{"id":"a","quantity":1}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("orderId "), "{err}");
        let err =
            request(r#"{"items":[{"id":"a","quantity":1},{"id":"b","quantity":0}]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "items[1].quantity must be an integer from 1 to 1000000, got 0"
        );
        let err = request(r#"{"items":[{"id":"a","quantity":1000001}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("items[0].quantity"), "{err}");
    }

    #[test]
    fn item_count_is_bounded() {
        assert_eq!(
            request(r#"{"items":[]}"#).unwrap_err(),
            ValidationError::ItemCount(0)
        );
        let lines: Vec<String> = (0..101)
            .map(|i| format!(r#"{{"id":"i{i}","quantity":1}}"#))
            .collect();
        let body = format!(r#"{{"items":[{}]}}"#, lines.join(","));
        assert_eq!(request(&body).unwrap_err(), ValidationError::ItemCount(101));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<OrderRequest>(r#"{"items":[],"price":3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `price`"), "{err}");
        let err =
            serde_json::from_str::<OrderRequest>(r#"{"items":[{"id":"a","quantity":1,"x":1}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn canonical_form_ignores_line_order_and_splits() {
        let a = request(r#"{"items":[{"id":"a","quantity":1},{"id":"b","quantity":2}]}"#).unwrap();
        let b = request(r#"{"items":[{"id":"b","quantity":1},{"id":"a","quantity":1},{"id":"b","quantity":1}]}"#).unwrap();
        let c = request(r#"{"items":[{"id":"a","quantity":2},{"id":"b","quantity":1}]}"#).unwrap();
        assert_eq!(a.items.canonical_json(), b.items.canonical_json());
        assert_ne!(a.items.canonical_json(), c.items.canonical_json());
    }

    #[test]
    fn event_ids_are_unique_within_a_millisecond() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| EventId::new_v7().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(EventId::parse("id", &EventId::new_v7().to_string()).is_ok());
    }
}
