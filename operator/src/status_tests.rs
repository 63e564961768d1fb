//! Status and condition transitions, including the no-change case that must not cause a write.

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

use super::*;
use crate::deployment::build_deployment;
use crate::fixtures;

fn t(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).expect("valid timestamp")
}

fn deployment(replicas: i32, ready: i32, updated: i32) -> Deployment {
    let mut d = build_deployment(&fixtures::with_url()).expect("builds");
    d.metadata.generation = Some(2);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(2),
        replicas: Some(replicas),
        ready_replicas: Some(ready),
        updated_replicas: Some(updated),
        ..DeploymentStatus::default()
    });
    d
}

fn with_condition(
    mut d: Deployment,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Deployment {
    let s = d.status.get_or_insert_with(DeploymentStatus::default);
    s.conditions
        .get_or_insert_with(Vec::new)
        .push(DeploymentCondition {
            type_: Some(type_.into()),
            status: Some(status.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..DeploymentCondition::default()
        });
    d
}

fn cond<'a>(s: &'a ExactlyOnceConsumerStatus, type_: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn summary(s: &ExactlyOnceConsumerStatus) -> Vec<(String, String, String)> {
    s.conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn triple(v: [(&str, &str, &str); 3]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect()
}

#[test]
fn fully_ready_fleet_is_available_settled_and_healthy() {
    let cr = fixtures::with_url();
    let s = build_status(&cr, Some(&deployment(3, 3, 3)), None, t(0));
    assert_eq!(
        summary(&s),
        triple([
            ("Available", "True", "AllReplicasReady"),
            ("Progressing", "False", "RolloutComplete"),
            ("Degraded", "False", "AsExpected")
        ])
    );
    assert_eq!((s.replicas, s.ready_replicas), (3, 3));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(
        s.selector,
        "app.kubernetes.io/instance=inventory,app.kubernetes.io/name=inventory-consumer"
    );
    assert_eq!(s.deployment_name.as_deref(), Some("inventory-consumer"));
    assert!(
        s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );
}

#[test]
fn rollout_in_progress_is_progressing_and_not_yet_available() {
    let s = build_status(
        &fixtures::with_url(),
        Some(&deployment(4, 1, 2)),
        None,
        t(0),
    );
    assert_eq!(
        summary(&s),
        triple([
            ("Available", "False", "ReplicasNotReady"),
            ("Progressing", "True", "RollingOut"),
            ("Degraded", "False", "AsExpected")
        ])
    );
    assert_eq!(cond(&s, AVAILABLE).message, "1/3 consumer pods ready");
    assert_eq!((s.replicas, s.ready_replicas), (4, 1));
}

#[test]
fn deployment_not_yet_observed_by_its_controller_is_still_progressing() {
    let mut d = deployment(3, 3, 3);
    d.metadata.generation = Some(3);
    let s = build_status(&fixtures::with_url(), Some(&d), None, t(0));
    assert_eq!(cond(&s, PROGRESSING).status, "True");
}

#[test]
fn scaled_to_zero_is_available() {
    let mut cr = fixtures::with_url();
    cr.spec.replicas = 0;
    let mut d = deployment(0, 0, 0);
    d.spec.replicas = Some(0);
    let s = build_status(&cr, Some(&d), None, t(0));
    assert_eq!(
        (
            cond(&s, AVAILABLE).status.as_str(),
            cond(&s, AVAILABLE).reason.as_str()
        ),
        ("True", "ScaledToZero")
    );
    assert_eq!(cond(&s, PROGRESSING).status, "False");
}

#[test]
fn missing_deployment_without_problem_is_being_created() {
    let s = build_status(&fixtures::with_url(), None, None, t(0));
    assert_eq!(
        summary(&s),
        triple([
            ("Available", "False", "DeploymentMissing"),
            ("Progressing", "True", "CreatingDeployment"),
            ("Degraded", "False", "AsExpected")
        ])
    );
    assert_eq!(
        (s.replicas, s.ready_replicas, s.deployment_name.as_deref()),
        (0, 0, None)
    );
}

#[test]
fn a_problem_makes_the_fleet_degraded_with_its_reason() {
    let problem = Problem {
        reason: "SecretNotFound".into(),
        message: "secret redis-auth not found in namespace shop".into(),
    };
    let s = build_status(&fixtures::with_secret(), None, Some(&problem), t(0));
    assert_eq!(
        summary(&s),
        triple([
            ("Available", "False", "DeploymentMissing"),
            ("Progressing", "False", "Blocked"),
            ("Degraded", "True", "SecretNotFound")
        ])
    );
    assert_eq!(cond(&s, DEGRADED).message, problem.message);
    // A problem on a fleet that already runs leaves availability to the pods.
    let s = build_status(
        &fixtures::with_secret(),
        Some(&deployment(3, 3, 3)),
        Some(&problem),
        t(0),
    );
    assert_eq!(cond(&s, AVAILABLE).status, "True");
    assert_eq!(cond(&s, DEGRADED).reason, "SecretNotFound");
}

#[test]
fn deployment_failures_surface_as_degraded() {
    let stuck = with_condition(
        deployment(3, 0, 3),
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        "ReplicaSet x has timed out progressing.",
    );
    let s = build_status(&fixtures::with_url(), Some(&stuck), None, t(0));
    assert_eq!(cond(&s, PROGRESSING).reason, "ProgressDeadlineExceeded");
    assert_eq!(cond(&s, PROGRESSING).status, "False");
    assert_eq!(cond(&s, DEGRADED).reason, "ProgressDeadlineExceeded");
    assert_eq!(
        cond(&s, DEGRADED).message,
        "ReplicaSet x has timed out progressing."
    );

    let refused = with_condition(
        deployment(0, 0, 0),
        "ReplicaFailure",
        "True",
        "FailedCreate",
        "pods forbidden: quota",
    );
    let s = build_status(&fixtures::with_url(), Some(&refused), None, t(0));
    assert_eq!(
        (
            cond(&s, DEGRADED).status.as_str(),
            cond(&s, DEGRADED).reason.as_str()
        ),
        ("True", "ReplicaFailure")
    );
    assert_eq!(cond(&s, DEGRADED).message, "pods forbidden: quota");
}

#[test]
fn transition_time_moves_only_when_the_status_flips() {
    let mut cr = fixtures::with_url();
    let first = build_status(&cr, Some(&deployment(3, 1, 3)), None, t(0));
    cr.status = Some(first.clone());

    // Same statuses, different messages and a later clock: times are kept.
    let second = build_status(&cr, Some(&deployment(3, 2, 3)), None, t(60));
    for c in &second.conditions {
        assert_eq!(
            c.last_transition_time,
            Time(t(0)),
            "{} kept its time",
            c.type_
        );
    }
    cr.status = Some(second);

    // Available flips to True: only its time moves.
    let third = build_status(&cr, Some(&deployment(3, 3, 3)), None, t(120));
    assert_eq!(cond(&third, AVAILABLE).last_transition_time, Time(t(120)));
    assert_eq!(cond(&third, DEGRADED).last_transition_time, Time(t(0)));
    assert_eq!(cond(&third, PROGRESSING).last_transition_time, Time(t(0)));
}

#[test]
fn an_unchanged_world_needs_no_status_write() {
    let mut cr = fixtures::with_url();
    let d = deployment(3, 3, 3);
    let first = build_status(&cr, Some(&d), None, t(0));
    assert!(needs_write(&cr, &first), "a CR without status needs one");
    cr.status = Some(first);
    let again = build_status(&cr, Some(&d), None, t(300));
    assert!(
        !needs_write(&cr, &again),
        "recomputing at a later time changes nothing"
    );
}

#[test]
fn a_changed_world_needs_a_status_write() {
    let mut cr = fixtures::with_url();
    cr.status = Some(build_status(&cr, Some(&deployment(3, 3, 3)), None, t(0)));
    assert!(needs_write(
        &cr,
        &build_status(&cr, Some(&deployment(3, 2, 3)), None, t(1))
    ));
    cr.metadata.generation = Some(5);
    assert!(needs_write(
        &cr,
        &build_status(&cr, Some(&deployment(3, 3, 3)), None, t(1))
    ));
}

#[test]
fn conditions_are_always_the_three_types_in_order() {
    let mut cr = fixtures::with_url();
    let mut old = build_status(&cr, None, None, t(0));
    old.conditions.push(Condition {
        type_: "Stale".into(),
        status: "True".into(),
        reason: "Old".into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: Time(t(0)),
    });
    cr.status = Some(old);
    let s = build_status(&cr, None, None, t(1));
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [AVAILABLE, PROGRESSING, DEGRADED]);
}
