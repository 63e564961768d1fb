//! CR -> Deployment, as a pure function. Everything the consumer pods look like is decided
//! here, so it is unit-tested without a cluster and the reconciler only applies the result.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use protocol::env;

use crate::crd::{ExactlyOnceConsumer, ExactlyOnceConsumerSpec};
use crate::redis_access::{plain_env, redis_env, tls_mounts, tls_volumes};

pub const CONTAINER_NAME: &str = "consumer";
/// Named so probes and scrapers refer to the port by role; it serves /healthz, /readyz, /metrics.
pub const HTTP_PORT_NAME: &str = "http";
/// `app.kubernetes.io/name` of every consumer pod.
pub const APP_NAME: &str = "inventory-consumer";
pub const MANAGED_BY: &str = "exactly-once-operator";
/// The label carrying [`MANAGED_BY`] on every Deployment the operator owns; the operator's
/// watch on Deployments selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Seconds the pod gets beyond the lock TTL to finish its in-flight order after SIGTERM.
pub const GRACE_MARGIN_SECS: i64 = 10;
/// A numeric non-root user, so `runAsNonRoot` holds whatever USER the image declares.
pub const RUN_AS_USER: i64 = 65532;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("{0} has no metadata.namespace: an ExactlyOnceConsumer is namespaced")]
    MissingNamespace(String),
    #[error(
        "{0} has no metadata.uid: the Deployment's owner reference needs it (was the object read from the API?)"
    )]
    MissingUid(String),
}

/// `<cr name>-consumer`: stable, so the operator always finds (and owns) the same Deployment.
pub fn deployment_name(cr_name: &str) -> String {
    format!("{cr_name}-consumer")
}

/// The labels the Deployment selects on. They never change for a given CR, because a
/// Deployment's selector is immutable.
pub fn selector_labels(cr_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), cr_name.to_owned()),
    ])
}

/// `selector_labels` as a label-selector string, for `status.selector` (the scale subresource).
pub fn selector_string(cr_name: &str) -> String {
    selector_labels(cr_name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Selector labels plus the descriptive `app.kubernetes.io/*` ones.
pub fn common_labels(cr_name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cr_name);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "consumer".to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/part-of".to_owned(),
        "exactly-once".to_owned(),
    );
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// ceil(lockTtlMs / 1000) + margin: a consumer stopped mid-order keeps its lock until it
/// finishes or the TTL passes, so the kubelet must not SIGKILL it sooner.
pub fn termination_grace_seconds(lock_ttl_ms: i64) -> i64 {
    let ceil_secs = lock_ttl_ms.max(0) / 1000 + i64::from(lock_ttl_ms % 1000 > 0);
    ceil_secs + GRACE_MARGIN_SECS
}

/// The Deployment the operator server-side applies for `cr`.
pub fn build_deployment(cr: &ExactlyOnceConsumer) -> Result<Deployment, BuildError> {
    let name = cr.name_any();
    let namespace = cr
        .namespace()
        .ok_or_else(|| BuildError::MissingNamespace(name.clone()))?;
    let owner = cr
        .controller_owner_ref(&())
        .ok_or_else(|| BuildError::MissingUid(name.clone()))?;
    let spec = &cr.spec;

    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(&name)),
            namespace: Some(namespace),
            labels: Some(common_labels(&name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(&name, spec)),
                    annotations: Some(pod_annotations(spec)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(spec)),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

/// User labels first, then ours: the operator's labels win so the selector always matches.
fn pod_labels(cr_name: &str, spec: &ExactlyOnceConsumerSpec) -> BTreeMap<String, String> {
    let mut labels = spec.pod_labels.clone().unwrap_or_default();
    labels.extend(common_labels(cr_name));
    labels
}

/// Scrape hints first, then the user's annotations, which may override them.
fn pod_annotations(spec: &ExactlyOnceConsumerSpec) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        (
            "prometheus.io/port".to_owned(),
            env::CONSUMER_HTTP_PORT.to_string(),
        ),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    annotations.extend(spec.pod_annotations.clone().unwrap_or_default());
    annotations
}

fn pod_spec(spec: &ExactlyOnceConsumerSpec) -> PodSpec {
    PodSpec {
        containers: vec![consumer_container(spec)],
        termination_grace_period_seconds: Some(termination_grace_seconds(spec.lock_ttl_ms)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            // Secret volumes are root-owned; fsGroup gives their files the consumer's group, so
            // the TLS key can be 0440 (not world-readable) and still be read by a non-root uid.
            // Allowed by the restricted Pod Security Standard.
            fs_group: Some(RUN_AS_USER),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        // The consumer talks to Redis only; a mounted API token would be an unused credential.
        automount_service_account_token: Some(false),
        service_account_name: spec.service_account_name.clone(),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        affinity: spec.affinity.clone(),
        image_pull_secrets: spec.image_pull_secrets.clone(),
        // With a read-only root filesystem, /tmp is the one writable place a runtime may expect.
        volumes: Some(
            [Volume {
                name: "tmp".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]
            .into_iter()
            .chain(tls_volumes(&spec.redis))
            .collect(),
        ),
        ..PodSpec::default()
    }
}

fn consumer_container(spec: &ExactlyOnceConsumerSpec) -> Container {
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.image_or_default().to_owned()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        env: Some(consumer_env(spec)),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.to_owned()),
            container_port: i32::from(env::CONSUMER_HTTP_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            [VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            }]
            .into_iter()
            .chain(tls_mounts(&spec.redis))
            .collect(),
        ),
        ..Container::default()
    }
}

/// The consumer's environment contract (`protocol::env`), filled from the spec.
pub fn consumer_env(spec: &ExactlyOnceConsumerSpec) -> Vec<EnvVar> {
    let mut vars = redis_env(&spec.redis);
    vars.extend([
        plain_env(env::CHANNEL, spec.channel.clone()),
        plain_env(env::LOCK_TTL_MS, spec.lock_ttl_ms.to_string()),
        plain_env(env::DELIVERY_MODE, spec.delivery_mode.as_str().to_owned()),
        EnvVar {
            name: env::CONSUMER_NAME.to_owned(),
            // The pod name is unique and stable for the pod's life: the consumer-group member
            // name in streams mode and the `by` of every applied order.
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        plain_env(
            env::HTTP_ADDR,
            format!("0.0.0.0:{}", env::CONSUMER_HTTP_PORT),
        ),
    ]);
    vars
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(HTTP_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;
