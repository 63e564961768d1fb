//! (CR, Deployment, reconcile problem) -> status, as a pure function. Conditions keep their
//! `lastTransitionTime` unless their status flips, so recomputing an unchanged status yields an
//! equal value and the reconciler can skip the write (no reconcile storm).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::{ExactlyOnceConsumer, ExactlyOnceConsumerStatus};
use crate::deployment::{deployment_name, selector_string};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// Why a reconcile could not bring the fleet to the spec, as shown in the `Degraded`
/// condition and the Warning event (`reason` is CamelCase, `message` says what to fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    pub message: String,
}

/// The status the operator wants the CR to show. `now` is only used for conditions whose status
/// changed (or is new), and is passed in so tests control time.
pub fn build_status(
    cr: &ExactlyOnceConsumer,
    deployment: Option<&Deployment>,
    problem: Option<&Problem>,
    now: Timestamp,
) -> ExactlyOnceConsumerStatus {
    let name = cr.name_any();
    let generation = cr.metadata.generation;
    let previous = cr
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let observed = deployment.map(|d| Observed::of(d, cr.spec.replicas));

    let conditions = [
        available(observed.as_ref(), cr.spec.replicas),
        progressing(observed.as_ref(), problem),
        degraded(observed.as_ref(), problem),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
        let wanted = Condition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            reason,
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        };
        keep_transition_time(previous, wanted)
    })
    .collect();

    ExactlyOnceConsumerStatus {
        observed_generation: generation,
        replicas: observed.as_ref().map_or(0, |o| o.replicas),
        ready_replicas: observed.as_ref().map_or(0, |o| o.ready),
        selector: selector_string(&name),
        deployment_name: deployment.map(|_| deployment_name(&name)),
        conditions,
    }
}

/// Whether `wanted` differs from what the CR shows: an unchanged status is not written.
pub fn needs_write(cr: &ExactlyOnceConsumer, wanted: &ExactlyOnceConsumerStatus) -> bool {
    cr.status.as_ref() != Some(wanted)
}

/// A condition keeps its previous transition time while its status stays the same.
fn keep_transition_time(previous: &[Condition], mut wanted: Condition) -> Condition {
    if let Some(prev) = previous.iter().find(|c| c.type_ == wanted.type_)
        && prev.status == wanted.status
    {
        wanted.last_transition_time = prev.last_transition_time.clone();
    }
    wanted
}

/// What the Deployment controller reports, reduced to what the conditions need.
struct Observed {
    desired: i32,
    replicas: i32,
    ready: i32,
    updated: i32,
    /// The Deployment controller has seen the Deployment's latest spec.
    caught_up: bool,
    deadline_exceeded: Option<String>,
    replica_failure: Option<String>,
}

impl Observed {
    fn of(d: &Deployment, desired: i32) -> Self {
        let status = d.status.clone().unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let find = |type_: &str, status: &str, reason: Option<&str>| {
            conditions
                .iter()
                .find(|c| {
                    c.type_.as_deref() == Some(type_)
                        && c.status.as_deref() == Some(status)
                        && (reason.is_none() || c.reason.as_deref() == reason)
                })
                .map(message_of)
        };
        Observed {
            desired,
            replicas: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            caught_up: status.observed_generation >= d.metadata.generation,
            deadline_exceeded: find("Progressing", "False", Some("ProgressDeadlineExceeded")),
            replica_failure: find("ReplicaFailure", "True", None),
        }
    }

    fn rolled_out(&self) -> bool {
        self.caught_up && self.updated == self.desired && self.replicas == self.desired
    }
}

fn message_of(c: &DeploymentCondition) -> String {
    c.message.clone().unwrap_or_default()
}

type Verdict = (&'static str, bool, String, String);

fn available(observed: Option<&Observed>, desired: i32) -> Verdict {
    match observed {
        None => (
            AVAILABLE,
            false,
            "DeploymentMissing".into(),
            "the consumer Deployment does not exist".into(),
        ),
        Some(_) if desired == 0 => (
            AVAILABLE,
            true,
            "ScaledToZero".into(),
            "spec.replicas is 0".into(),
        ),
        Some(o) if o.ready >= desired => (
            AVAILABLE,
            true,
            "AllReplicasReady".into(),
            format!("{}/{desired} consumer pods ready", o.ready),
        ),
        Some(o) => (
            AVAILABLE,
            false,
            "ReplicasNotReady".into(),
            format!("{}/{desired} consumer pods ready", o.ready),
        ),
    }
}

fn progressing(observed: Option<&Observed>, problem: Option<&Problem>) -> Verdict {
    match observed {
        Some(o) if o.deadline_exceeded.is_some() => (
            PROGRESSING,
            false,
            "ProgressDeadlineExceeded".into(),
            o.deadline_exceeded.clone().unwrap_or_default(),
        ),
        Some(o) if !o.rolled_out() => (
            PROGRESSING,
            true,
            "RollingOut".into(),
            format!(
                "{} of {} consumer pods updated, {} exist",
                o.updated, o.desired, o.replicas
            ),
        ),
        Some(_) => (
            PROGRESSING,
            false,
            "RolloutComplete".into(),
            "every consumer pod runs the current spec".into(),
        ),
        // Nothing to roll out until the problem is fixed; otherwise the Deployment is coming.
        None if problem.is_some() => (
            PROGRESSING,
            false,
            "Blocked".into(),
            "see the Degraded condition".into(),
        ),
        None => (
            PROGRESSING,
            true,
            "CreatingDeployment".into(),
            "the consumer Deployment is being created".into(),
        ),
    }
}

fn degraded(observed: Option<&Observed>, problem: Option<&Problem>) -> Verdict {
    if let Some(p) = problem {
        return (DEGRADED, true, p.reason.clone(), p.message.clone());
    }
    match observed {
        Some(Observed {
            deadline_exceeded: Some(message),
            ..
        }) => (
            DEGRADED,
            true,
            "ProgressDeadlineExceeded".into(),
            message.clone(),
        ),
        // e.g. pods refused by a quota or by Pod Security admission.
        Some(Observed {
            replica_failure: Some(message),
            ..
        }) => (DEGRADED, true, "ReplicaFailure".into(), message.clone()),
        _ => (
            DEGRADED,
            false,
            "AsExpected".into(),
            "no problem observed".into(),
        ),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
