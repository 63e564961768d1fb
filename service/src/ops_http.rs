//! `/healthz` (the process is alive), `/readyz` (it can do its work now: the owner flips it, and
//! named conditions can hold it down with a reason) and `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Whether the process can do its work right now. Two inputs: the owner's own signal (Redis
/// reachable, subscribed...), which its loops also read to pace themselves, and named conditions
/// that hold `/readyz` down with a reason an operator can act on (a misconfiguration) without
/// stopping that work.
#[derive(Clone, Default)]
pub struct Readiness(Arc<ReadinessState>);

#[derive(Default)]
struct ReadinessState {
    working: AtomicBool,
    /// Condition name -> why it holds readiness down.
    held: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// Sets the owner's own signal.
    pub fn set(&self, ready: bool) {
        self.0.working.store(ready, Ordering::Relaxed);
    }

    /// The owner's own signal, whatever the named conditions say.
    pub fn get(&self) -> bool {
        self.0.working.load(Ordering::Relaxed)
    }

    /// Holds readiness down under `condition` for `reason` (`Some`), or releases it (`None`).
    pub fn hold(&self, condition: &'static str, reason: Option<String>) {
        let mut held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(reason) => held.insert(condition, reason),
            None => held.remove(condition),
        };
    }

    /// What `/readyz` answers: `Ok` when ready, else the reasons of the conditions holding it
    /// down (none when only the owner's signal is down: its logs say why).
    pub fn verdict(&self) -> Result<(), Vec<String>> {
        let held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        if self.get() && held.is_empty() {
            return Ok(());
        }
        Err(held
            .iter()
            .map(|(condition, reason)| format!("{condition}: {reason}"))
            .collect())
    }
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    registry: Arc<Registry>,
}

/// The three operational routes, to merge into a service's own router or serve alone.
pub fn ops_routes(readiness: Readiness, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            readiness,
            registry,
        })
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.readiness.verdict() {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            std::iter::once("not ready".to_owned())
                .chain(reasons)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds `addr` and serves `router` until `shutdown` fires, then drains open requests.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "HTTP listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_working_and_nothing_holds_it_down() {
        let readiness = Readiness::default();
        assert_eq!(readiness.verdict(), Err(vec![]), "starts not ready");
        readiness.set(true);
        assert_eq!(readiness.verdict(), Ok(()));

        readiness.hold("delivery-mode", Some("pubsub vs streams".into()));
        assert!(
            readiness.get(),
            "a held condition leaves the owner's signal alone"
        );
        assert_eq!(
            readiness.verdict(),
            Err(vec!["delivery-mode: pubsub vs streams".to_owned()])
        );
        readiness.set(false);
        readiness.set(true);
        assert!(readiness.verdict().is_err(), "held until released");

        readiness.hold("delivery-mode", None);
        assert_eq!(readiness.verdict(), Ok(()));
        readiness.hold("delivery-mode", None);
        assert_eq!(readiness.verdict(), Ok(()), "releasing twice is harmless");
    }
}
