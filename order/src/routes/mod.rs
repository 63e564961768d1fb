//! The HTTP API of the order service.

pub mod inventory;
pub mod orders;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::group_commit::Accepter;
use crate::json_body::BODY_LIMIT;
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub accepter: Accepter,
    pub metrics: Arc<Metrics>,
}

pub fn api(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(orders::create))
        .route("/orders/{order_id}", get(orders::show))
        .route("/inventory", get(inventory::list))
        .route(
            "/inventory/{item}",
            get(inventory::show).put(inventory::set),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
