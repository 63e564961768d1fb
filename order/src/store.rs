//! The order service's Redis calls: short and boring, all key names from `protocol::Keys`.

use std::collections::HashMap;

use protocol::order::{ItemId, OrderId};
use protocol::record::OrderRecord;
use protocol::{DeliveryMode, Keys};
use redis::AsyncCommands;
use redis_io::conn::RedisConn;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Store {
    pub conn: RedisConn,
    pub keys: Keys,
}

impl Store {
    /// An order by the client's orderId (for orders from starting-design publishers without
    /// one, their event id is their orderId).
    pub async fn order(&self, id: &str) -> Result<Option<OrderRecord>, ApiError> {
        let Ok(order_id) = OrderId::parse("orderId", id) else {
            return Ok(None);
        };
        let hash: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.order(&order_id))
            .await?;
        Ok(OrderRecord::from_hash(order_id.as_str(), hash))
    }

    pub async fn inventory(&self) -> Result<HashMap<String, i64>, ApiError> {
        Ok(self.conn.clone().hgetall(self.keys.inventory()).await?)
    }

    pub async fn stock(&self, item: &ItemId) -> Result<Option<i64>, ApiError> {
        Ok(self
            .conn
            .clone()
            .hget(self.keys.inventory(), item.as_str())
            .await?)
    }

    pub async fn set_stock(&self, item: &ItemId, quantity: u64) -> Result<(), ApiError> {
        let () = self
            .conn
            .clone()
            .hset(self.keys.inventory(), item.as_str(), quantity)
            .await?;
        Ok(())
    }

    /// Tells the consumers which mode orders are delivered in (they refuse readiness when theirs
    /// differs). No expiry: the last order service's word stands while none runs.
    pub async fn announce_delivery_mode(&self, mode: DeliveryMode) -> redis::RedisResult<()> {
        self.conn
            .clone()
            .set(self.keys.delivery_mode(), mode.as_str())
            .await
    }
}
