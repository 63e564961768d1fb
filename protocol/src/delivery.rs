//! How orders travel from the order service to the consumers.

use serde::{Deserialize, Serialize};

/// `pubsub`: every replica hears every order, a lock avoids wasted work and a re-drive recovers
/// orders whose winner died. `streams`: a consumer group hands each order to one replica, with
/// pending-entry reclaim and a dead-letter stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    #[default]
    Pubsub,
    Streams,
}

impl DeliveryMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Pubsub => "pubsub",
            DeliveryMode::Streams => "streams",
        }
    }
}

impl std::fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("DELIVERY_MODE must be `pubsub` or `streams`, got `{0}`")]
pub struct UnknownDeliveryMode(pub String);

impl std::str::FromStr for DeliveryMode {
    type Err = UnknownDeliveryMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pubsub" => Ok(DeliveryMode::Pubsub),
            "streams" => Ok(DeliveryMode::Streams),
            other => Err(UnknownDeliveryMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        for mode in [DeliveryMode::Pubsub, DeliveryMode::Streams] {
            assert_eq!(mode.as_str().parse::<DeliveryMode>(), Ok(mode));
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{mode}\""));
        }
        assert!("Streams".parse::<DeliveryMode>().is_err());
    }
}
