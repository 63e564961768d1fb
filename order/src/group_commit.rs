//! Group commit for accepts: requests that arrive while a batch is in flight go together in the
//! next script call. At low load every order travels alone (no added wait); under load one
//! round trip and one script call serve many orders, which is what bounds throughput.

use protocol::{DeliveryMode, Keys, OrderMessage};
use redis_io::conn::RedisConn;
use redis_io::scripts::{self, AcceptOutcome};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Most orders in one accept call: bounds how long one script holds Redis.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<AcceptOutcome, ApiError>>;

/// The handle request handlers use; the task behind it ends when every handle is dropped.
#[derive(Clone)]
pub struct Accepter {
    requests: mpsc::Sender<(OrderMessage, Reply)>,
}

impl Accepter {
    /// Accepts one order; resolves when the batch it joined has been committed.
    pub async fn accept(&self, message: OrderMessage) -> Result<AcceptOutcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((message, reply))
            .await
            .map_err(|_| ApiError::Internal("the accept task has stopped".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the accept task dropped a request".into()))?
    }
}

/// Starts the committing task; await the returned future (it ends once every [`Accepter`] is
/// dropped and the last batch is answered).
pub fn start(
    conn: RedisConn,
    keys: Keys,
    mode: DeliveryMode,
) -> (Accepter, impl Future<Output = ()>) {
    let (requests, mut queue) = mpsc::channel::<(OrderMessage, Reply)>(4 * MAX_BATCH);
    let task = async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            commit(&mut conn.clone(), &keys, mode, std::mem::take(&mut batch)).await;
        }
    };
    (Accepter { requests }, task)
}

async fn commit(
    conn: &mut RedisConn,
    keys: &Keys,
    mode: DeliveryMode,
    batch: Vec<(OrderMessage, Reply)>,
) {
    let messages: Vec<&OrderMessage> = batch.iter().map(|(m, _)| m).collect();
    let invocation = scripts::accept_invocation(keys, mode, &messages);
    let result = invocation
        .invoke_async::<redis::Value>(conn)
        .await
        .map_err(ApiError::from)
        .and_then(|reply| {
            scripts::parse_accept_reply(reply, batch.len())
                .map_err(|e| ApiError::Internal(e.to_string()))
        });
    match result {
        Ok(outcomes) => {
            for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome)); // the client may have gone; the order stands
            }
        }
        Err(e) => {
            // Nothing is promised: every client of the batch gets the error and may retry with
            // its orderId, which finds the order if the script did commit.
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
