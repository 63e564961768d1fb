//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never both
//! reconcile. Same rules as client-go: a follower takes over only after the lease record has not
//! changed for a full lease duration *on its own monotonic clock* (immune to clock skew), and the
//! leader stops acting once it has failed to renew for `renew_deadline`, which is shorter.
//! Writes use the Lease's resourceVersion, so of two racing candidates exactly one wins.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, info, warn};

#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// How long a follower waits, without seeing the record change, before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal. Must be < lease_duration.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        // client-go's defaults.
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should do with the lease record it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder went silent): write ourselves in.
    Acquire,
    /// We hold it: refresh `renewTime`.
    Renew,
    /// Someone else holds it and is alive.
    Wait,
}

/// `unchanged_for`: how long, by our clock, the record has looked exactly like this.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    timings: &Timings,
) -> Decision {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        None => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(_) => {
            let declared = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok());
            let duration = declared.map_or(timings.lease_duration, Duration::from_secs);
            if unchanged_for >= duration {
                Decision::Acquire
            } else {
                Decision::Wait
            }
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
}

impl LeaderElector {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        timings: Timings,
    ) -> Self {
        LeaderElector {
            api,
            name: name.into(),
            identity: identity.into(),
            timings,
        }
    }

    /// Returns once this replica holds the lease. API errors are logged and retried.
    /// `on_standby` runs after every round that found the lease held by another live replica,
    /// so a caller reports "standby" only once an election round has actually said so.
    pub async fn acquire(&self, mut on_standby: impl FnMut()) -> Instant {
        // (resourceVersion, when we first saw it): the follower's skew-free clock.
        let mut seen: Option<(String, Instant)> = None;
        loop {
            let attempt = Instant::now();
            match self.try_once(&mut seen, attempt).await {
                Ok(true) => return attempt,
                Ok(false) => on_standby(),
                Err(e) => warn!(lease = %self.name, error = %e, "leader election attempt failed"),
            }
            sleep(self.timings.retry_period).await;
        }
    }

    /// Keeps renewing; returns why leadership was lost. `acquired_at` is when the winning write
    /// was sent. Never returns while the lease is safely ours.
    pub async fn hold(&self, acquired_at: Instant) -> String {
        let mut renewed_at = acquired_at;
        let mut seen = None;
        loop {
            sleep(self.timings.retry_period).await;
            let deadline = renewed_at + self.timings.renew_deadline;
            let attempt = Instant::now();
            match timeout(
                deadline.saturating_duration_since(attempt),
                self.try_once(&mut seen, attempt),
            )
            .await
            {
                Ok(Ok(true)) => renewed_at = attempt,
                Ok(Ok(false)) => {
                    return format!("lease {} is now held by another replica", self.name);
                }
                Ok(Err(e)) if Instant::now() < deadline => {
                    warn!(lease = %self.name, error = %e, "renewing the lease failed; retrying");
                }
                Ok(Err(e)) => {
                    return format!(
                        "could not renew lease {} within the renew deadline: {e}",
                        self.name
                    );
                }
                Err(_) => {
                    return format!(
                        "could not renew lease {} within the renew deadline",
                        self.name
                    );
                }
            }
        }
    }

    /// Hands the lease over at shutdown so a standby takes over at once instead of waiting out
    /// the lease duration.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        info!(lease = %self.name, identity = %self.identity, "released the leader lease");
        Ok(())
    }

    /// One read-decide-write round. Ok(true): we hold the lease after it.
    async fn try_once(
        &self,
        seen: &mut Option<(String, Instant)>,
        now: Instant,
    ) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let since = match seen {
            Some((v, at)) if *v == version => *at,
            _ => {
                *seen = Some((version, now));
                now
            }
        };
        let decision = decide(
            current.spec.as_ref(),
            &self.identity,
            now.saturating_duration_since(since),
            &self.timings,
        );
        debug!(lease = %self.name, ?decision, "leader election round");
        match decision {
            Decision::Wait => Ok(false),
            Decision::Acquire | Decision::Renew => self.write(current, decision).await,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, decision: Decision) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        let acquiring = decision == Decision::Acquire;
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: i32::try_from(self.timings.lease_duration.as_secs()).ok(),
            acquire_time: if acquiring {
                Some(now.clone())
            } else {
                previous.and_then(|s| s.acquire_time.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if acquiring {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    async fn create(&self) -> Result<bool, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(None, Decision::Acquire)),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Another candidate created it first: it leads; we read it next round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn write(&self, mut lease: Lease, decision: Decision) -> Result<bool, kube::Error> {
        lease.spec = Some(self.spec(lease.spec.as_ref(), decision));
        // `replace` carries the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: secs,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_free_lease_is_acquired() {
        let t = Timings::default();
        assert_eq!(decide(None, "me", Duration::ZERO, &t), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "me", Duration::ZERO, &t),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&held_by("", Some(15))), "me", Duration::ZERO, &t),
            Decision::Acquire
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let t = Timings::default();
        assert_eq!(
            decide(
                Some(&held_by("me", Some(15))),
                "me",
                Duration::from_secs(60),
                &t
            ),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_holder_is_left_alone_until_silent_for_its_declared_duration() {
        let t = Timings::default();
        let other = held_by("other", Some(20));
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(19), &t),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(20), &t),
            Decision::Acquire
        );
        // Without a declared duration, ours applies.
        let other = held_by("other", None);
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(14), &t),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(15), &t),
            Decision::Acquire
        );
    }

    #[test]
    fn the_leader_gives_up_before_a_follower_may_take_over() {
        let t = Timings::default();
        assert!(t.renew_deadline + t.retry_period < t.lease_duration);
    }
}
