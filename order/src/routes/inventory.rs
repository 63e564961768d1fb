//! `GET /inventory`, `GET /inventory/{item}`, `PUT /inventory/{item}`: read and set stock.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use protocol::order::ItemId;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::error::ApiError;
use crate::json_body::parse_json;

/// Stock a PUT may set: generous, but far from where `HINCRBY` could overflow.
pub const MAX_STOCK: u64 = 1_000_000_000_000;

#[derive(Debug, Serialize)]
pub struct Stock {
    pub id: String,
    pub quantity: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    pub quantity: u64,
}

pub async fn list(State(state): State<AppState>) -> Result<Json<BTreeMap<String, i64>>, ApiError> {
    Ok(Json(state.store.inventory().await?.into_iter().collect()))
}

pub async fn show(
    State(state): State<AppState>,
    Path(item): Path<String>,
) -> Result<Json<Stock>, ApiError> {
    let id = ItemId::parse("item", &item)?;
    match state.store.stock(&id).await? {
        Some(quantity) => Ok(Json(Stock { id: item, quantity })),
        None => Err(ApiError::NotFound(format!("item {item} is not stocked"))),
    }
}

pub async fn set(
    State(state): State<AppState>,
    Path(item): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Stock>, ApiError> {
    let id = ItemId::parse("item", &item)?;
    let SetStock { quantity } = parse_json(&headers, body)?;
    if quantity > MAX_STOCK {
        return Err(ApiError::Invalid(format!(
            "quantity must be an integer from 0 to {MAX_STOCK}, got {quantity}"
        )));
    }
    state.store.set_stock(&id, quantity).await?;
    tracing::info!(item = %id, quantity, "stock set");
    Ok(Json(Stock {
        id: item,
        quantity: quantity as i64,
    }))
}
