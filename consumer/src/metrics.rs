//! What a consumer counts, for `/metrics`. Names start with `eo_consumer_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViaLabel {
    pub via: &'static str,
}

pub struct Metrics {
    pub applied: Counter,
    pub rejected: Counter,
    pub duplicates: Counter,
    pub lock_contended: Counter,
    pub recovered: Family<ViaLabel, Counter>,
    pub invalid: Family<ReasonLabel, Counter>,
    pub dead_lettered: Counter,
    pub shed: Counter,
    pub redis_errors: Counter,
    pub reconnects: Counter,
    pub pings_missed: Counter,
    pub apply_seconds: Histogram,
    pub pending_orders: Gauge,
    pub delivery_mode_mismatch: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            applied: Counter::default(),
            rejected: Counter::default(),
            duplicates: Counter::default(),
            lock_contended: Counter::default(),
            recovered: Family::default(),
            invalid: Family::default(),
            dead_lettered: Counter::default(),
            shed: Counter::default(),
            redis_errors: Counter::default(),
            reconnects: Counter::default(),
            pings_missed: Counter::default(),
            // 0.1 ms .. ~1.6 s: a pipelined batch apply sits at the low end, a stalled Redis high.
            apply_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            pending_orders: Gauge::default(),
            delivery_mode_mismatch: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("eo_consumer");
        r.register(
            "orders_applied",
            "Orders applied to inventory",
            m.applied.clone(),
        );
        r.register(
            "orders_rejected",
            "Orders rejected for insufficient stock (nothing taken)",
            m.rejected.clone(),
        );
        r.register(
            "duplicates_skipped",
            "Deliveries of orders already done, skipped",
            m.duplicates.clone(),
        );
        r.register(
            "lock_contended",
            "Orders another replica held the lease on",
            m.lock_contended.clone(),
        );
        r.register(
            "orders_recovered",
            "Orders taken over from a dead or absent holder",
            m.recovered.clone(),
        );
        r.register(
            "invalid_messages",
            "Messages refused as malformed, by reason",
            m.invalid.clone(),
        );
        r.register(
            "dead_lettered",
            "Orders and stream entries moved to the dead-letter stream (both modes)",
            m.dead_lettered.clone(),
        );
        r.register(
            "messages_shed",
            "Pub/Sub messages dropped because the intake queue was full (their orders are re-driven from the pending index)",
            m.shed.clone(),
        );
        r.register(
            "redis_errors",
            "Redis calls that failed",
            m.redis_errors.clone(),
        );
        r.register(
            "reconnects",
            "Subscriptions or stream reads re-established",
            m.reconnects.clone(),
        );
        r.register(
            "subscription_pings_missed",
            "Pub/Sub subscriptions given up because a PING got no PONG in time (a stalled connection)",
            m.pings_missed.clone(),
        );
        r.register(
            "apply_duration_seconds",
            "Time of one apply round trip (a batch)",
            m.apply_seconds.clone(),
        );
        r.register(
            "pending_orders",
            "Accepted orders not yet done, as last seen by recovery",
            m.pending_orders.clone(),
        );
        r.register(
            "delivery_mode_mismatch",
            "1 while the order service announces a delivery mode other than this consumer's (its orders are never applied), else 0",
            m.delivery_mode_mismatch.clone(),
        );
        m
    }
}
