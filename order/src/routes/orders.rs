//! `POST /orders` and `GET /orders/{orderId}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use protocol::OrderMessage;
use protocol::order::{EventId, Order, OrderId, OrderRequest};
use protocol::record::OrderRecord;
use redis_io::scripts::AcceptOutcome;
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;
use crate::json_body::parse_json;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub id: String,
    pub order_id: String,
    pub status: &'static str,
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let result = accept(&state, &headers, body).await;
    let status = match &result {
        Ok((status, _)) => *status,
        Err(e) => e.status(),
    };
    state.metrics.count_create(status);
    result
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let order = parse_json::<OrderRequest>(headers, body)?.validate()?;
    let message = to_message(order, idempotency_key(headers)?)?;
    let order_id = message.order_id.to_string();
    let (status, id) = match state.accepter.accept(message).await? {
        AcceptOutcome::Accepted { id, .. } => {
            tracing::info!(order_id = %order_id, event_id = %id, outcome = "accepted", "order accepted");
            (StatusCode::ACCEPTED, id)
        }
        // A retry of an order we already have: same answer, nothing published again.
        AcceptOutcome::Exists { id } => (StatusCode::OK, id),
        AcceptOutcome::Conflict { id } => return Err(ApiError::Conflict { order_id, id }),
        AcceptOutcome::Failed { error } => {
            return Err(ApiError::Internal(format!(
                "Redis refused to record order {order_id}: {error}"
            )));
        }
    };
    Ok((
        status,
        Json(Accepted {
            id,
            order_id,
            status: "accepted",
        }),
    ))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<OrderId>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::Invalid("Idempotency-Key must be printable ASCII".into()))?;
    Ok(Some(OrderId::parse("Idempotency-Key", text)?))
}

/// Gives the order its event id; the client's orderId (from the body or the Idempotency-Key
/// header) keys retries, and an order without one is keyed by its event id.
pub fn to_message(order: Order, header_key: Option<OrderId>) -> Result<OrderMessage, ApiError> {
    let id = EventId::new_v7();
    let order_id = match (order.order_id, header_key) {
        (Some(body), Some(header)) if body != header => {
            return Err(ApiError::Invalid(format!(
                "orderId ({body}) and the Idempotency-Key header ({header}) must agree"
            )));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => OrderId::parse("orderId", id.as_str())?,
    };
    Ok(OrderMessage {
        id,
        order_id,
        items: order.items,
    })
}

pub async fn show(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderRecord>, ApiError> {
    state
        .store
        .order(&order_id)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "order {order_id} is unknown (or past its retention)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(order_id: Option<&str>) -> Order {
        let body = match order_id {
            Some(id) => format!(r#"{{"orderId":"{id}","items":[{{"id":"a","quantity":1}}]}}"#),
            None => r#"{"items":[{"id":"a","quantity":1}]}"#.to_owned(),
        };
        serde_json::from_str::<OrderRequest>(&body)
            .unwrap()
            .validate()
            .unwrap()
    }

    fn key(id: &str) -> Option<OrderId> {
        Some(OrderId::parse("k", id).unwrap())
    }

    #[test]
    fn order_id_comes_from_body_header_or_event_id() {
        assert_eq!(
            to_message(order(Some("29")), None)
                .unwrap()
                .order_id
                .as_str(),
            "29"
        );
        assert_eq!(
            to_message(order(None), key("k1"))
                .unwrap()
                .order_id
                .as_str(),
            "k1"
        );
        assert_eq!(
            to_message(order(Some("29")), key("29"))
                .unwrap()
                .order_id
                .as_str(),
            "29"
        );
        let m = to_message(order(None), None).unwrap();
        assert_eq!(m.order_id.as_str(), m.id.as_str());
    }

    #[test]
    fn body_and_header_must_agree() {
        let err = to_message(order(Some("29")), key("30")).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("Idempotency-Key"), "{err}");
    }
}
