//! The Jepsen-style verdict on a run, from what the client was told and what Redis holds:
//! - lost: accepted (202/200) but never applied or rejected;
//! - duplicated: an item whose stock disagrees with initial stock minus the applied orders
//!   (an order applied twice, or applied without its decrement);
//! - unexpected: applied but never accepted (nor left unknown by a lost answer);
//! - oversold: an item below zero.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use protocol::order::OrderId;
use protocol::record::{OrderRecord, Status, field};
use protocol::{Keys, OrderMessage};
use redis::AsyncCommands;

use crate::load::LoadReport;

/// How long a fleet gets to finish every accepted order before it is judged: ample for the
/// fault suite's largest runs, so a verdict that is not clean means lost, not late.
pub const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Verdict {
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub unexpected: Vec<String>,
    pub oversold: Vec<String>,
    pub applied: usize,
    pub rejected: usize,
    pub accepted: usize,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.oversold.is_empty()
    }

    pub fn summary(&self) -> String {
        let few = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        format!(
            "accepted {}, applied {}, rejected {}; lost {} [{}], duplicated {} [{}], unexpected {} [{}], oversold {} [{}]",
            self.accepted,
            self.applied,
            self.rejected,
            self.lost.len(),
            few(&self.lost),
            self.duplicated.len(),
            few(&self.duplicated),
            self.unexpected.len(),
            few(&self.unexpected),
            self.oversold.len(),
            few(&self.oversold),
        )
    }
}

/// Waits up to `timeout` for every accepted order to be done, then judges the run.
pub async fn check(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    report: &LoadReport,
    initial_stock: &HashMap<String, i64>,
    timeout: Duration,
) -> Verdict {
    let deadline = Instant::now() + timeout;
    let mut not_done = Vec::new();
    loop {
        not_done.clear();
        let ids: Vec<&String> = report.accepted.keys().collect();
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for oid in chunk {
                let oid = OrderId::parse("orderId", oid).expect("the load uses valid orderIds");
                pipe.hget(keys.order(&oid), field::STATUS);
            }
            let statuses: Vec<Option<String>> =
                pipe.query_async(conn).await.expect("reading statuses");
            for (oid, status) in chunk.iter().zip(statuses) {
                if !matches!(status.as_deref(), Some("applied" | "rejected")) {
                    not_done.push((*oid).clone());
                }
            }
        }
        if not_done.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let records = all_records(conn, keys).await;
    let mut verdict = Verdict {
        lost: not_done,
        accepted: report.accepted.len(),
        ..Verdict::default()
    };
    let mut taken: BTreeMap<String, i64> = BTreeMap::new();
    for record in &records {
        match record.status {
            Status::Applied => {
                verdict.applied += 1;
                let message = record
                    .message
                    .as_deref()
                    .map(|m| OrderMessage::parse(m.as_bytes()));
                let message = message
                    .expect("an applied order keeps its message")
                    .expect("stored messages parse");
                for (item, quantity) in message.items.totals() {
                    *taken.entry(item.to_string()).or_default() += quantity as i64;
                }
            }
            Status::Rejected => verdict.rejected += 1,
            // Not done: already counted as lost above if the client was told it was accepted.
            Status::Accepted | Status::DeadLettered => {}
        }
        let known = report.accepted.contains_key(&record.order_id)
            || report.unknown.contains(&record.order_id);
        if record.status != Status::Accepted && !known {
            verdict.unexpected.push(record.order_id.clone());
        }
    }
    let stock: HashMap<String, i64> = conn
        .hgetall(keys.inventory())
        .await
        .expect("reading inventory");
    for (item, initial) in initial_stock {
        let expected = initial - taken.get(item).copied().unwrap_or(0);
        let actual = stock.get(item).copied().unwrap_or(0);
        if actual != expected {
            verdict
                .duplicated
                .push(format!("{item}: stock {actual}, expected {expected}"));
        }
        if actual < 0 {
            verdict.oversold.push(format!("{item}: {actual}"));
        }
    }
    verdict
}

async fn all_records(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
) -> Vec<OrderRecord> {
    let pattern = keys.order_prefix();
    let mut names: Vec<String> = Vec::new();
    {
        let mut iter: redis::AsyncIter<String> = conn
            .scan_options(
                redis::ScanOptions::default()
                    // No glob character can occur in it: `Channel` allows none.
                    .with_pattern(format!("{pattern}*"))
                    .with_count(1000),
            )
            .await
            .expect("SCAN");
        while let Some(name) = iter.next_item().await {
            names.push(name.expect("a key name"));
        }
    }
    let mut records = Vec::with_capacity(names.len());
    for chunk in names.chunks(1000) {
        let mut pipe = redis::pipe();
        for name in chunk {
            pipe.hgetall(name);
        }
        let hashes: Vec<HashMap<String, String>> =
            pipe.query_async(conn).await.expect("reading records");
        for (name, hash) in chunk.iter().zip(hashes) {
            let id = name.strip_prefix(&pattern).unwrap_or_default();
            records.extend(OrderRecord::from_hash(id, hash));
        }
    }
    records
}
