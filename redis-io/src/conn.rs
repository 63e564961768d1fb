//! The connection both binaries send their short commands on. redis-rs's `ConnectionManager`
//! reconnects when its connection drops, but a command that times out is retried on the same
//! connection; a half-open one (no FIN, no RST: a proxy or NAT that lost the flow, a failover
//! behind a load balancer) then fails every command forever. This one replaces its connection
//! after a timeout, so a stuck path costs one timeout, not the process.

use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Cheap to clone; every clone sends on the current connection.
#[derive(Clone)]
pub struct RedisConn(Arc<Shared>);

struct Shared {
    client: redis::Client,
    config: ConnectionManagerConfig,
    db: i64,
    /// The connection in use, and how many times it was replaced.
    current: Mutex<(u64, ConnectionManager)>,
}

impl RedisConn {
    /// Connects on first use, so a process can start (not ready) while Redis is down.
    pub fn new(client: redis::Client, config: ConnectionManagerConfig) -> RedisResult<Self> {
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(RedisConn(Arc::new(Shared {
            db: client.get_connection_info().redis_settings().db(),
            client,
            config,
            current: Mutex::new((0, manager)),
        })))
    }

    fn current(&self) -> (u64, ConnectionManager) {
        self.0.lock().clone()
    }

    /// After a timeout on connection `generation`, starts a new one, unless another caller
    /// already has. A failure to build it keeps the old one (and the next timeout tries again).
    fn settle<T>(&self, generation: u64, result: &RedisResult<T>) {
        let Err(e) = result else { return };
        if !e.is_timeout() {
            return;
        }
        let mut current = self.0.lock();
        if current.0 != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.0.client.clone(), self.0.config.clone())
        {
            Ok(manager) => {
                tracing::warn!(error = %e, "a Redis command timed out: replacing the connection");
                *current = (generation + 1, manager);
            }
            Err(e) => tracing::warn!(error = %e, "cannot replace the timed-out Redis connection"),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, ConnectionManager)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.current();
            let result = conn.req_packed_command(cmd).await;
            self.settle(generation, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.settle(generation, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}
