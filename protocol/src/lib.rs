//! The one definition of everything two deployables must agree on: the order message on the
//! wire, the Redis key layout, the Lua scripts, and the environment the operator injects
//! into consumer pods.

pub mod acl;
pub mod delivery;
pub mod env;
pub mod keys;
pub mod lua;
pub mod message;
pub mod order;
pub mod record;
pub mod redis_version;

pub use delivery::DeliveryMode;
pub use keys::{Channel, Keys};
pub use message::OrderMessage;
