//! Condition polling for the Kubernetes suites: the harness's one poller, at a pace that spares
//! the API server.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 200 ms until it returns `Ok`; at the deadline, panics naming `what` and
/// the last reason.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    crate::net::poll_until(what, timeout, Duration::from_millis(200), check).await
}
