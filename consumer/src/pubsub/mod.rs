//! Pub/Sub delivery, the starting design repaired: every replica hears every order and the one
//! that wins the lease applies it. A dropped subscription is re-established with backoff
//! (readiness is false meanwhile) and followed by a full re-drive, because Pub/Sub never replays
//! what was published while nobody listened.
//!
//! The parts: `listen` (the bounded intake queue between the subscription and the appliers),
//! `lease` (which replica applies an order) and `redrive` (the pending index, read again for
//! orders whose holder died or that a full queue shed).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::supervise::{periodically, reconnecting};

pub mod lease;
mod listen;

use listen::{listen, work};
pub mod redrive;

/// A subscription whose TCP path stops delivering without closing (no FIN, no RST: a dead NAT
/// entry, a partition) looks exactly like a quiet channel, and its replica would stay ready and
/// deaf. So the subscription is pinged every `PING_EVERY` and a PONG later than `PING_TIMEOUT`
/// ends the session: a deaf replica is unready and resubscribing within 5 s, the default lock
/// TTL, instead of never. The timeout is generous beside a loopback or in-cluster round trip
/// (well under 10 ms) because the PONG queues behind every message Redis sent before it; the
/// client reads those into its own buffer at once, so only a stalled path makes it late.
const PING_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(ctx: &Context, shutdown: &CancellationToken) {
    reconnecting(ctx, shutdown, "subscription", || session(ctx, shutdown)).await;
}

/// One subscription, until shutdown (`Ok`) or until the connection fails (`Err`).
async fn session(ctx: &Context, shutdown: &CancellationToken) -> redis::RedisResult<()> {
    let (sink, messages) = subscribe(ctx).await?;
    tracing::info!(consumer = %ctx.name, channel = %ctx.keys.channel(), "subscribed");
    let (queue, intake) = mpsc::channel(ctx.config.intake_capacity as usize);
    let intake = Mutex::new(intake);
    let shed = AtomicBool::new(false);
    // Stops the listener when the work ends early (a failed re-drive): nobody would drain it.
    let stop_listening = shutdown.child_token();
    // Whichever ends first ends the other: a dead subscription needs no pings, and a missed
    // PONG means nothing more will be heard.
    let hear = async {
        tokio::select! {
            listened = listen(ctx, messages, queue, &shed, &stop_listening) => listened,
            missed = keep_alive(ctx, sink) => Err(missed),
        }
    };
    let stop_taking = shutdown.child_token();
    let work = async {
        let worked = async {
            // Whatever was published before we listened is only in the pending index.
            redrive::redrive(ctx, None, shutdown).await?;
            ctx.readiness.set(true);
            two_workers(&stop_taking, || work(ctx, &intake, &shed, &stop_taking)).await
        }
        .await;
        stop_listening.cancel();
        worked
    };
    // The listener ends on shutdown, when the subscription closes or when a ping is missed, and
    // drops the queue's sender. On a lost subscription the workers then apply what is queued
    // and stop; on shutdown they finish only the batch they hold, and what is still queued
    // waits in the pending index for the next re-drive (of this replica or another).
    let (listened, worked) = tokio::join!(hear, work);
    worked.and(listened)
}

/// Connects and subscribes, within the ping timeout: a path that is already stalled would
/// otherwise hang here, where no ping can notice it.
async fn subscribe(ctx: &Context) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let subscribing = async {
        let mut pubsub = ctx.client.get_async_pubsub().await?;
        pubsub.subscribe(ctx.keys.channel().as_str()).await?;
        Ok(pubsub.split())
    };
    tokio::time::timeout(PING_TIMEOUT, subscribing)
        .await
        .unwrap_or_else(|_| Err(timed_out("subscribing took longer than the ping timeout")))
}

/// Pings the subscription every `PING_EVERY` until a PONG does not come back within
/// `PING_TIMEOUT` (counted as a missed ping) or the connection refuses the PING; returns why.
async fn keep_alive(ctx: &Context, mut sink: PubSubSink) -> redis::RedisError {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the subscribe just proved the path
    loop {
        tick.tick().await;
        match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return e,
            Err(_) => {
                ctx.metrics.pings_missed.inc();
                return timed_out("no PONG on the subscription within the ping timeout");
            }
        }
    }
}

fn timed_out(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// Runs two workers until both have stopped; returns an error if either failed. A failed worker
/// fires `stop`, which stops the other from taking more but lets it finish the batch it holds:
/// dropping it mid-apply (as `try_join!` would) abandons orders between lease and apply.
async fn two_workers<F, Fut>(stop: &CancellationToken, worker: F) -> redis::RedisResult<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = redis::RedisResult<()>>,
{
    let run = || async {
        let worked = worker().await;
        if worked.is_err() {
            stop.cancel();
        }
        worked
    };
    let (first, second) = tokio::join!(run(), run());
    first.and(second)
}

/// Re-drives orders whose holder died (their lease has run out) every recovery interval.
pub async fn redrive_periodically(ctx: &Context, shutdown: &CancellationToken) {
    let lease = ctx.config.lock_ttl();
    periodically(ctx, shutdown, "re-drive", || {
        redrive::redrive(ctx, Some(lease), shutdown)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn a_failed_worker_lets_the_other_finish_the_batch_it_holds_and_take_no_more() {
        let stop = CancellationToken::new();
        let started = AtomicUsize::new(0);
        let (taken, finished) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let holding = Notify::new();
        let result = two_workers(&stop, || async {
            if started.fetch_add(1, Ordering::SeqCst) == 0 {
                // Fails while the other worker is in the middle of a batch.
                holding.notified().await;
                return Err(timed_out("the re-drive failed"));
            }
            while !stop.is_cancelled() {
                taken.fetch_add(1, Ordering::SeqCst);
                holding.notify_one();
                stop.cancelled().await; // still applying when the failure comes
                finished.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .await;
        assert!(result.is_err(), "the failure is returned");
        assert_eq!(taken.load(Ordering::SeqCst), 1, "no batch taken after it");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the batch held was finished"
        );
    }
}
