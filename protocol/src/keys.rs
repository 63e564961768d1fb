//! The Redis key layout of one fleet. Every key carries the hash tag `{<channel>}`: the keys one
//! script touches then live in one slot (Redis Cluster), and two fleets on different channels
//! never share a key.

use crate::order::OrderId;

/// A Redis channel name that is also safe inside a key: 1 to 128 characters of
/// `[A-Za-z0-9._:-]`. Braces would break the hash tag; spaces and glob characters make channel
/// names that tools and `PSUBSCRIBE` users mishandle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel(String);

pub const MAX_CHANNEL_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CHANNEL must be 1 to {MAX_CHANNEL_LEN} characters of [A-Za-z0-9._:-], got {0:?}")]
pub struct BadChannel(pub String);

impl std::str::FromStr for Channel {
    type Err = BadChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=MAX_CHANNEL_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Channel(s.to_owned()))
        } else {
            Err(BadChannel(s.to_owned()))
        }
    }
}

impl Channel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The consumer group of streams mode; one per channel because the stream is per channel.
pub const CONSUMER_GROUP: &str = "inventory";

#[derive(Debug, Clone)]
pub struct Keys {
    channel: Channel,
    prefix: String,
}

impl Keys {
    pub fn new(channel: &Channel) -> Self {
        Keys {
            channel: channel.clone(),
            prefix: format!("eo:{{{channel}}}:"),
        }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// What every key of this fleet starts with (`eo:{<channel>}:`), for ACL key patterns.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Hash item id -> units in stock.
    pub fn inventory(&self) -> String {
        format!("{}inventory", self.prefix)
    }

    /// Hash: the durable record of one order (by the client's orderId, which is what makes a
    /// retry idempotent): its event id, items and message, its status (the done marker) and how
    /// it ended.
    pub fn order(&self, id: &OrderId) -> String {
        format!("{}{id}", self.order_prefix())
    }

    /// What every order record's key starts with, for tools that scan them all.
    pub fn order_prefix(&self) -> String {
        format!("{}order:", self.prefix)
    }

    /// Pub/Sub mode: sorted set of the orderIds accepted and not yet done, scored by accept time
    /// (ms); what re-drive works from. (In streams mode the stream is that record.)
    pub fn pending(&self) -> String {
        format!("{}pending", self.prefix)
    }

    /// The pubsub-mode lease on one order: a random token, expiring after the lock TTL.
    pub fn lock(&self, id: &OrderId) -> String {
        format!("{}lock:{id}", self.prefix)
    }

    /// Streams-mode delivery.
    pub fn stream(&self) -> String {
        format!("{}stream", self.prefix)
    }

    /// Stream of the orders (and malformed entries) that could not be applied, in either
    /// delivery mode, with the reason; capped near `DEAD_LETTER_MAXLEN` entries.
    pub fn dead_letter(&self) -> String {
        format!("{}dead-letter", self.prefix)
    }

    /// Pub/Sub mode: hash orderId -> how many times Redis refused its apply, counted across the
    /// fleet (every replica may be the one that takes the order next). An order reaching
    /// `MAX_DELIVERIES` is dead-lettered and its field removed; so is the field of an order that
    /// gets done.
    pub fn refusals(&self) -> String {
        format!("{}refusals", self.prefix)
    }

    /// String: the delivery mode the order service sends orders by (`DeliveryMode::as_str`),
    /// written by it without expiry and read by consumers, which make a mismatch loud: a fleet
    /// in the other mode would never see an order.
    pub fn delivery_mode(&self) -> String {
        format!("{}delivery-mode", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_channel_hash_tag() {
        let keys = Keys::new(&"order_updates".parse().unwrap());
        let id = OrderId::parse("orderId", "29").unwrap();
        for key in [
            keys.inventory(),
            keys.order(&id),
            keys.order_prefix(),
            keys.pending(),
            keys.lock(&id),
            keys.stream(),
            keys.dead_letter(),
            keys.refusals(),
            keys.delivery_mode(),
        ] {
            assert!(key.starts_with("eo:{order_updates}:"), "{key}");
        }
        assert_eq!(keys.lock(&id), "eo:{order_updates}:lock:29");
        assert_eq!(keys.order(&id), "eo:{order_updates}:order:29");
        assert_eq!(keys.delivery_mode(), "eo:{order_updates}:delivery-mode");
        assert_eq!(keys.dead_letter(), "eo:{order_updates}:dead-letter");
        assert_eq!(keys.refusals(), "eo:{order_updates}:refusals");
        assert!(keys.order(&id).starts_with(&keys.order_prefix()));
    }

    #[test]
    fn two_channels_never_share_a_key() {
        let a = Keys::new(&"a".parse().unwrap());
        let b = Keys::new(&"b".parse().unwrap());
        assert_ne!(a.inventory(), b.inventory());
    }

    #[test]
    fn channel_names_follow_the_rule() {
        for ok in ["order_updates", "fleet-1:orders.v2"] {
            assert!(ok.parse::<Channel>().is_ok(), "{ok}");
        }
        for bad in ["", "a{b}", "a b", "orders*", &"c".repeat(129)] {
            let err = bad.parse::<Channel>().unwrap_err();
            assert!(err.to_string().starts_with("CHANNEL must be"), "{err}");
        }
    }
}
