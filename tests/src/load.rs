//! A client that places orders through the real order service the way a careful user would:
//! each order has its own orderId, and a request whose answer was lost (connection refused,
//! 503 while Redis restarts) is retried with the same orderId until it gets one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct OrderSpec {
    pub order_id: String,
    pub items: Vec<(String, u32)>,
}

impl OrderSpec {
    pub fn body(&self) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|(id, q)| json!({"id": id, "quantity": q}))
            .collect();
        json!({"orderId": self.order_id, "items": items})
    }
}

/// Stocks every item with `units` through the order service (`PUT /inventory/{item}`) and
/// returns the initial stock for the checker.
pub async fn stock(base_url: &str, items: &[&str], units: i64) -> HashMap<String, i64> {
    let client = reqwest::Client::new();
    for item in items {
        let resp = client
            .put(format!("{base_url}/inventory/{item}"))
            .json(&json!({"quantity": units}))
            .send()
            .await
            .expect("PUT /inventory");
        assert!(
            resp.status().is_success(),
            "PUT /inventory/{item}: {}",
            resp.status()
        );
    }
    items.iter().map(|i| (i.to_string(), units)).collect()
}

/// `n` orders named `{prefix}-{i}`, one to three lines each over `items`, quantities 1 to 3,
/// from a fixed seed so a failing run can be replayed.
pub fn orders(prefix: &str, n: usize, items: &[&str]) -> Vec<OrderSpec> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64: deterministic, dependency-free.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let lines = 1 + (next() % 3) as usize;
            let mut chosen: Vec<(String, u32)> = Vec::new();
            for _ in 0..lines {
                let item = items[(next() % items.len() as u64) as usize].to_owned();
                if !chosen.iter().any(|(id, _)| *id == item) {
                    chosen.push((item, 1 + (next() % 3) as u32));
                }
            }
            OrderSpec {
                order_id: format!("{prefix}-{i}"),
                items: chosen,
            }
        })
        .collect()
}

/// What the client learned: orders the service accepted (orderId -> event id and the order),
/// orders whose fate it never learned, and how many requests it had to retry.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub accepted: HashMap<String, (String, OrderSpec)>,
    pub unknown: HashSet<String>,
    pub retries: usize,
}

impl LoadReport {
    /// Adds what another load learned.
    pub fn merge(&mut self, other: LoadReport) {
        self.accepted.extend(other.accepted);
        self.unknown.extend(other.unknown);
        self.retries += other.retries;
    }
}

/// Places `orders` with `concurrency` requests in flight; each is retried for up to
/// `retry_for` while the service cannot answer.
pub async fn place_orders(
    base_url: &str,
    orders: Vec<OrderSpec>,
    concurrency: usize,
    retry_for: Duration,
) -> LoadReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let url = Arc::new(format!("{base_url}/orders"));
    let results: Vec<(OrderSpec, Result<String, ()>, usize)> = futures::stream::iter(orders)
        .map(|spec| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let (outcome, retries) = place_one(&client, &url, &spec, retry_for).await;
                (spec, outcome, retries)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut report = LoadReport::default();
    for (spec, outcome, retries) in results {
        report.retries += retries;
        match outcome {
            Ok(event_id) => {
                report
                    .accepted
                    .insert(spec.order_id.clone(), (event_id, spec));
            }
            Err(()) => {
                report.unknown.insert(spec.order_id.clone());
            }
        }
    }
    report
}

async fn place_one(
    client: &reqwest::Client,
    url: &str,
    spec: &OrderSpec,
    retry_for: Duration,
) -> (Result<String, ()>, usize) {
    let deadline = Instant::now() + retry_for;
    let body = spec.body();
    let mut retries = 0;
    loop {
        match client.post(url).json(&body).send().await {
            Ok(resp) if resp.status() == 202 || resp.status() == 200 => {
                let answer: Value = resp.json().await.expect("the order service answers JSON");
                let id = answer["id"]
                    .as_str()
                    .expect("an accepted order has an id")
                    .to_owned();
                return (Ok(id), retries);
            }
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status();
                panic!(
                    "order {} was refused with {status}: {}",
                    spec.order_id,
                    resp.text().await.unwrap_or_default()
                );
            }
            // 5xx or no answer: the order may or may not be recorded; the same orderId makes
            // the retry safe.
            _ if Instant::now() < deadline => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => return (Err(()), retries),
        }
    }
}
