//! What the order service counts, for `/metrics`. Names start with `eo_order_`.

use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

#[derive(Default)]
pub struct Metrics {
    /// `POST /orders` answers by status: 202 new, 200 retry, 4xx refused, 500 Redis refused
    /// the order, 503 Redis down.
    pub create_responses: Family<CodeLabel, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.sub_registry_with_prefix("eo_order").register(
            "create_responses",
            "POST /orders answers by HTTP status",
            m.create_responses.clone(),
        );
        m
    }

    pub fn count_create(&self, status: StatusCode) {
        self.create_responses
            .get_or_create(&CodeLabel {
                code: status.as_u16(),
            })
            .inc();
    }
}
