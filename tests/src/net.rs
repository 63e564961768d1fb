//! Loopback ports and condition waits: the only ways these suites find a port or wait.

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now (the OS picks it; the listener is closed before return).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("the OS hands out a loopback port")
        .port()
}

/// Polls `check` every 50 ms until it returns `Ok`; at the deadline, panics naming `what` and
/// the last reason it gave.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    poll_until(what, timeout, Duration::from_millis(50), check).await
}

/// Polls `check` every `every` until it returns `Ok`; `Err` says why not yet.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(reason) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {reason:#}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
