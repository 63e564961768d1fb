//! Guards against the one misconfiguration delivery cannot survive: an order service sending in
//! one mode to a fleet reading in the other, where every order is accepted and never applied.
//! The order service announces its mode in Redis; a consumer that finds a different one says so
//! loudly (an ERROR, `eo_consumer_delivery_mode_mismatch` 1, `/readyz` 503 with the reason),
//! keeps working, and clears all three once the modes agree again.

use std::time::Duration;

use protocol::{Channel, DeliveryMode};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// The readiness condition this check holds down.
pub const READINESS_CONDITION: &str = "delivery-mode";

/// How often the announced mode is read: a mode change shows within a few seconds, at one `GET`
/// per interval per replica.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The order service delivers by `theirs` (as announced, so possibly a mode this consumer does
/// not know), this consumer reads by `ours`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub ours: DeliveryMode,
    pub theirs: String,
}

/// The verdict on what the order service announced (`None`: no order service has run on this
/// channel yet, so nothing can be stuck). Anything but this consumer's own mode, spelled as
/// `DeliveryMode` spells it, is a mismatch.
pub fn mismatch(ours: DeliveryMode, announced: Option<&str>) -> Option<Mismatch> {
    let theirs = announced?;
    (theirs.parse::<DeliveryMode>() != Ok(ours)).then(|| Mismatch {
        ours,
        theirs: theirs.to_owned(),
    })
}

impl Mismatch {
    /// For `/readyz` and the log: both modes, the channel, the consequence and the fix.
    pub fn explain(&self, channel: &Channel) -> String {
        format!(
            "the order service delivers orders on channel `{channel}` by `{theirs}` but this \
             consumer reads by `{ours}`: its orders are accepted and never applied. Set the same \
             DELIVERY_MODE on both (in Kubernetes: the ExactlyOnceConsumer's spec.deliveryMode \
             and the order service's DELIVERY_MODE); orders accepted meanwhile wait for \
             consumers in `{theirs}` mode",
            theirs = self.theirs,
            ours = self.ours,
        )
    }
}

/// Reads the announced mode every [`CHECK_INTERVAL`] until shutdown and reports changes of the
/// verdict. Readiness is held down until the first successful read, so a replica in the wrong
/// mode is never briefly ready; a failed read keeps the last verdict.
pub async fn watch(ctx: &Context, shutdown: &CancellationToken) {
    ctx.readiness.hold(
        READINESS_CONDITION,
        Some(format!(
            "the order service's delivery mode ({}) has not been read yet",
            ctx.keys.delivery_mode()
        )),
    );
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Option<Mismatch>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let announced: Option<String> = match ctx.conn.clone().get(ctx.keys.delivery_mode()).await {
            Ok(announced) => announced,
            Err(e) => {
                ctx.metrics.redis_errors.inc();
                // While the session is down it reports Redis trouble itself.
                if ctx.readiness.get() {
                    tracing::warn!(consumer = %ctx.name, error = %e,
                        "reading the order service's delivery mode failed; the next tick retries");
                }
                continue;
            }
        };
        let verdict = mismatch(ctx.config.redis.delivery_mode, announced.as_deref());
        if last.as_ref() != Some(&verdict) {
            report(
                ctx,
                verdict.as_ref(),
                last.as_ref().is_some_and(Option::is_some),
            );
            last = Some(verdict);
        }
    }
}

/// Logs, sets the gauge and holds or releases readiness for a new verdict.
fn report(ctx: &Context, verdict: Option<&Mismatch>, was_mismatched: bool) {
    let channel = ctx.keys.channel();
    match verdict {
        Some(mismatch) => {
            let reason = mismatch.explain(channel);
            tracing::error!(consumer = %ctx.name, %channel, mode = %mismatch.ours,
                order_service_mode = mismatch.theirs, "{reason}");
            ctx.metrics.delivery_mode_mismatch.set(1);
            ctx.readiness.hold(READINESS_CONDITION, Some(reason));
        }
        None => {
            if was_mismatched {
                tracing::info!(consumer = %ctx.name, %channel, mode = %ctx.config.redis.delivery_mode,
                    "the order service's delivery mode agrees with this consumer's again");
            }
            ctx.metrics.delivery_mode_mismatch.set(0);
            ctx.readiness.hold(READINESS_CONDITION, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use DeliveryMode::{Pubsub, Streams};

    #[test]
    fn no_order_service_yet_is_no_mismatch() {
        assert_eq!(mismatch(Pubsub, None), None);
        assert_eq!(mismatch(Streams, None), None);
    }

    #[test]
    fn the_same_mode_agrees() {
        for mode in [Pubsub, Streams] {
            assert_eq!(mismatch(mode, Some(mode.as_str())), None, "{mode}");
        }
    }

    #[test]
    fn the_other_mode_is_a_mismatch_naming_both() {
        assert_eq!(
            mismatch(Streams, Some("pubsub")),
            Some(Mismatch {
                ours: Streams,
                theirs: "pubsub".into()
            })
        );
        assert_eq!(
            mismatch(Pubsub, Some("streams")),
            Some(Mismatch {
                ours: Pubsub,
                theirs: "streams".into()
            })
        );
    }

    #[test]
    fn a_mode_this_consumer_does_not_know_is_a_mismatch() {
        // A newer order service's mode, or a hand-edited key: nothing this replica reads.
        for announced in ["kafka", "Pubsub", "pubsub ", ""] {
            let verdict = mismatch(Pubsub, Some(announced));
            assert_eq!(verdict.map(|m| m.theirs).as_deref(), Some(announced));
        }
    }

    #[test]
    fn the_explanation_names_both_modes_the_channel_and_the_fix() {
        let text = mismatch(Streams, Some("pubsub"))
            .expect("a mismatch")
            .explain(&"fleet-a".parse().expect("a valid channel"));
        for part in [
            "`pubsub`",
            "`streams`",
            "`fleet-a`",
            "DELIVERY_MODE",
            "spec.deliveryMode",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    }
}
