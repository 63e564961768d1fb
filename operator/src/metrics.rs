//! The operator's Prometheus metrics: reconciles by outcome, errors by reason, reconcile
//! duration, and whether this replica holds the leader lease.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    errors: Family<ReasonLabels, Counter>,
    duration: Histogram,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("exactly_once_operator");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let errors = Family::<ReasonLabels, Counter>::default();
        // 1 ms .. ~16 s: a reconcile is a handful of API calls.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by outcome (ok, degraded, error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
        }
    }
}

impl Metrics {
    /// Starts timing one reconcile; the returned guard records the duration when dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            histogram: &self.duration,
            started: Instant::now(),
        }
    }

    pub fn reconciled(&self, outcome: &'static str) {
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn failed(&self, reason: &'static str) {
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome: "error" })
            .inc();
        self.errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_errors_duration_and_leadership() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.reconciled("ok");
        m.failed("ApplyFailed");
        m.set_leader(true);
        let text = m.encode().expect("encodes");
        assert!(
            text.contains(r#"exactly_once_operator_reconciles_total{outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"exactly_once_operator_reconciles_total{outcome="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"exactly_once_operator_reconcile_errors_total{reason="ApplyFailed"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("exactly_once_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("exactly_once_operator_leader 1"), "{text}");
    }
}
