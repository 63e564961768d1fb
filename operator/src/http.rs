//! `/healthz` (the process serves), `/readyz` (200 only on the leader, the one replica doing
//! the work; a standby answers 503 `standby`) and `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, serve};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Starting = 0,
    Standby = 1,
    Leader = 2,
    Stopping = 3,
}

pub struct Health {
    role: AtomicU8,
    pub metrics: Arc<Metrics>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Health {
            role: AtomicU8::new(Role::Starting as u8),
            metrics,
        }
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Release);
        self.metrics.set_leader(role == Role::Leader);
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::Standby,
            2 => Role::Leader,
            3 => Role::Stopping,
            _ => Role::Starting,
        }
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match health.role() {
        Role::Leader => (StatusCode::OK, "leader\n").into_response(),
        // Not an error, but not serving either: only the leader reconciles.
        Role::Standby => (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response(),
        Role::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
        Role::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response(),
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    match health.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Serves until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_follows_the_role_and_metrics_are_served() {
        let health = Arc::new(Health::new(Arc::new(Metrics::default())));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, health.clone(), async {
            let _ = stop_rx.await;
        }));
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            stream.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_role(Role::Standby);
        let standby = get("/readyz").await;
        assert!(
            standby.starts_with("HTTP/1.1 503") && standby.contains("standby"),
            "{standby}"
        );
        health.set_role(Role::Leader);
        let ready = get("/readyz").await;
        assert!(
            ready.starts_with("HTTP/1.1 200") && ready.contains("leader"),
            "{ready}"
        );
        assert!(
            get("/metrics")
                .await
                .contains("exactly_once_operator_leader 1")
        );
        stop_tx.send(()).expect("server still running");
        server.await.expect("joins").expect("serves cleanly");
    }
}
