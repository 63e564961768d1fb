//! Every branch of the Deployment builder: env from a URL and from a Secret, defaults, pod
//! knobs, the restricted security context, the owner reference and the stable selector, and how
//! the Redis credentials and TLS Secrets land in the pod (their combinations are in
//! `redis_access_tests.rs`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, LocalObjectReference, PodAntiAffinity, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::crd::{
    CaSecretRef, CredentialsSecretRef, DEFAULT_IMAGE, ImagePullPolicy, RedisTls, SecretNameRef,
};
use crate::fixtures::{self, NAME, NAMESPACE, UID};
use crate::redis_access::{TLS_CA_VOLUME, TLS_CLIENT_VOLUME};

fn build(cr: &ExactlyOnceConsumer) -> Deployment {
    build_deployment(cr).expect("a CR read from the API builds")
}

fn container(d: &Deployment) -> Container {
    let pod = d.spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

fn pod(d: &Deployment) -> PodSpec {
    d.spec.template.spec.clone().expect("pod spec")
}

fn env_map(c: &Container) -> BTreeMap<String, EnvVar> {
    c.env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

fn value(env: &BTreeMap<String, EnvVar>, name: &str) -> String {
    env.get(name)
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("{name} has no value"))
}

#[test]
fn name_namespace_and_labels_derive_from_the_cr() {
    let d = build(&fixtures::with_url());
    assert_eq!(d.metadata.name.as_deref(), Some("inventory-consumer"));
    assert_eq!(d.metadata.namespace.as_deref(), Some(NAMESPACE));
    let labels = d.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/name"], APP_NAME);
    assert_eq!(labels["app.kubernetes.io/instance"], NAME);
    assert_eq!(labels["app.kubernetes.io/managed-by"], MANAGED_BY);
    assert_eq!(labels["app.kubernetes.io/component"], "consumer");
    assert_eq!(labels["app.kubernetes.io/part-of"], "exactly-once");
}

#[test]
fn owner_reference_makes_the_cr_the_controller() {
    let d = build(&fixtures::with_url());
    let owners = d.metadata.owner_references.expect("owner references");
    assert_eq!(owners.len(), 1);
    let owner = &owners[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("exactlyonce.dev/v1alpha1", "ExactlyOnceConsumer", NAME, UID)
    );
    assert_eq!(owner.controller, Some(true));
}

#[test]
fn missing_uid_or_namespace_is_an_error_naming_the_field() {
    let mut cr = fixtures::with_url();
    cr.metadata.uid = None;
    let err = build_deployment(&cr).expect_err("no uid");
    assert!(err.to_string().contains("metadata.uid"), "{err}");
    let mut cr = fixtures::with_url();
    cr.metadata.namespace = None;
    let err = build_deployment(&cr).expect_err("no namespace");
    assert!(err.to_string().contains("metadata.namespace"), "{err}");
}

#[test]
fn selector_is_the_two_stable_labels_and_pods_carry_them() {
    let mut cr = fixtures::with_url();
    let before = build(&cr).spec.selector;
    // Nothing a user edits in the spec may change the (immutable) selector.
    cr.spec.replicas = 7;
    cr.spec.pod_labels = Some(BTreeMap::from([("team".to_owned(), "shop".to_owned())]));
    cr.spec.channel = "other".to_owned();
    let d = build(&cr);
    let spec = d.spec;
    assert_eq!(spec.selector, before);
    assert_eq!(spec.selector.match_labels, Some(selector_labels(NAME)));
    assert!(spec.selector.match_expressions.is_none());
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    for (k, v) in selector_labels(NAME) {
        assert_eq!(pod_labels.get(&k), Some(&v));
    }
    assert_eq!(pod_labels["team"], "shop");
    assert_eq!(
        selector_string(NAME),
        "app.kubernetes.io/instance=inventory,app.kubernetes.io/name=inventory-consumer"
    );
}

#[test]
fn operator_labels_win_over_pod_labels() {
    let mut cr = fixtures::with_url();
    // The CRD refuses this, but an old object or a disabled CEL check must not break the selector.
    cr.spec.pod_labels = Some(BTreeMap::from([(
        "app.kubernetes.io/instance".to_owned(),
        "x".to_owned(),
    )]));
    let labels = build(&cr)
        .spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("labels");
    assert_eq!(labels["app.kubernetes.io/instance"], NAME);
}

#[test]
fn defaults_give_three_pubsub_replicas_on_the_default_channel_and_image() {
    let d = build(&fixtures::with_url());
    assert_eq!(d.spec.replicas, Some(3));
    let c = container(&d);
    assert_eq!(c.name, CONTAINER_NAME);
    assert_eq!(c.image.as_deref(), Some(DEFAULT_IMAGE));
    assert_eq!(c.image_pull_policy, None);
    let env = env_map(&c);
    assert_eq!(value(&env, env::CHANNEL), env::DEFAULT_CHANNEL);
    assert_eq!(
        value(&env, env::LOCK_TTL_MS),
        env::DEFAULT_LOCK_TTL_MS.to_string()
    );
    assert_eq!(value(&env, env::DELIVERY_MODE), "pubsub");
    assert_eq!(value(&env, env::HTTP_ADDR), "0.0.0.0:8080");
    assert_eq!(pod(&d).termination_grace_period_seconds, Some(15));
}

#[test]
fn env_carries_the_url_as_a_value() {
    let env = env_map(&container(&build(&fixtures::with_url())));
    assert_eq!(value(&env, env::REDIS_URL), "redis://redis:6379");
    assert!(env[env::REDIS_URL].value_from.is_none());
}

#[test]
fn env_reads_the_url_from_the_secret_ref() {
    let env = env_map(&container(&build(&fixtures::with_secret())));
    let url = &env[env::REDIS_URL];
    assert_eq!(url.value, None);
    let secret = url
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("redis-auth", "url")
    );
    assert_eq!(secret.optional, Some(false));
}

#[test]
fn env_names_are_exactly_the_protocol_contract_once_each() {
    let c = container(&build(&fixtures::with_url()));
    let names: Vec<String> = c
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [
            env::REDIS_URL,
            env::CHANNEL,
            env::LOCK_TTL_MS,
            env::DELIVERY_MODE,
            env::CONSUMER_NAME,
            env::HTTP_ADDR
        ]
    );
}

#[test]
fn consumer_name_is_the_pod_name_from_the_downward_api() {
    let env = env_map(&container(&build(&fixtures::with_url())));
    let field = env[env::CONSUMER_NAME]
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("fieldRef");
    assert_eq!(field.field_path, "metadata.name");
}

#[test]
fn spec_values_flow_into_replicas_env_and_grace_period() {
    let mut cr = fixtures::with_url();
    cr.spec.replicas = 0;
    cr.spec.channel = "orders:eu".to_owned();
    cr.spec.lock_ttl_ms = 30_001;
    cr.spec.delivery_mode = protocol::DeliveryMode::Streams;
    cr.spec.image = Some("registry.example/consumer:pinned".to_owned());
    cr.spec.image_pull_policy = Some(ImagePullPolicy::Always);
    let d = build(&cr);
    assert_eq!(d.spec.replicas, Some(0));
    let c = container(&d);
    assert_eq!(c.image.as_deref(), Some("registry.example/consumer:pinned"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    let env = env_map(&c);
    assert_eq!(value(&env, env::CHANNEL), "orders:eu");
    assert_eq!(value(&env, env::LOCK_TTL_MS), "30001");
    assert_eq!(value(&env, env::DELIVERY_MODE), "streams");
    // ceil(30.001 s) + 10 s margin.
    assert_eq!(pod(&d).termination_grace_period_seconds, Some(41));
}

#[test]
fn grace_period_is_longer_than_the_lock_ttl() {
    for (ttl, want) in [
        (100, 11),
        (1000, 11),
        (1001, 12),
        (5000, 15),
        (3_600_000, 3610),
    ] {
        assert_eq!(termination_grace_seconds(ttl), want, "ttl {ttl}");
        assert!(termination_grace_seconds(ttl) * 1000 > ttl);
    }
}

#[test]
fn pod_knobs_pass_through() {
    let mut cr = fixtures::with_url();
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([(
            "cpu".to_owned(),
            Quantity("100m".to_owned()),
        )])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("128Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    };
    let toleration = Toleration {
        key: Some("dedicated".to_owned()),
        operator: Some("Equal".to_owned()),
        value: Some("orders".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        ..Toleration::default()
    };
    let affinity = Affinity {
        pod_anti_affinity: Some(PodAntiAffinity::default()),
        ..Affinity::default()
    };
    cr.spec.resources = Some(resources.clone());
    cr.spec.node_selector = Some(BTreeMap::from([("pool".to_owned(), "orders".to_owned())]));
    cr.spec.tolerations = Some(vec![toleration.clone()]);
    cr.spec.affinity = Some(affinity.clone());
    cr.spec.service_account_name = Some("consumer".to_owned());
    cr.spec.image_pull_secrets = Some(vec![LocalObjectReference {
        name: "regcred".to_owned(),
    }]);
    cr.spec.pod_annotations = Some(BTreeMap::from([
        ("sidecar.istio.io/inject".to_owned(), "false".to_owned()),
        ("prometheus.io/scrape".to_owned(), "false".to_owned()),
    ]));
    let d = build(&cr);
    let p = pod(&d);
    assert_eq!(container(&d).resources, Some(resources));
    assert_eq!(p.node_selector, cr.spec.node_selector);
    assert_eq!(p.tolerations, Some(vec![toleration]));
    assert_eq!(p.affinity, Some(affinity));
    assert_eq!(p.service_account_name.as_deref(), Some("consumer"));
    assert_eq!(p.image_pull_secrets, cr.spec.image_pull_secrets);
    let annotations = d
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .expect("annotations");
    assert_eq!(annotations["sidecar.istio.io/inject"], "false");
    assert_eq!(
        annotations["prometheus.io/scrape"], "false",
        "user annotations override the scrape hints"
    );
    assert_eq!(annotations["prometheus.io/port"], "8080");
}

#[test]
fn unset_pod_knobs_stay_unset() {
    let d = build(&fixtures::with_url());
    let p = pod(&d);
    assert_eq!(
        (p.node_selector, p.tolerations, p.affinity),
        (None, None, None)
    );
    assert_eq!((p.service_account_name, p.image_pull_secrets), (None, None));
    assert_eq!(container(&d).resources, None);
}

#[test]
fn security_context_passes_the_restricted_pod_security_standard() {
    let d = build(&fixtures::with_url());
    let p = pod(&d);
    let psc = p.security_context.clone().expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let sc = container(&d)
        .security_context
        .expect("container security context");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.capabilities.expect("capabilities").drop,
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        sc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    // Restricted also forbids host namespaces and hostPath volumes.
    assert_eq!((p.host_network, p.host_pid, p.host_ipc), (None, None, None));
    assert!(
        p.volumes
            .unwrap_or_default()
            .iter()
            .all(|v| v.host_path.is_none())
    );
    assert_eq!(p.automount_service_account_token, Some(false));
}

#[test]
fn probes_and_port_target_the_consumer_http_server() {
    let c = container(&build(&fixtures::with_url()));
    let port = &c.ports.clone().expect("ports")[0];
    assert_eq!(
        (
            port.name.as_deref(),
            port.container_port,
            port.protocol.as_deref()
        ),
        (Some(HTTP_PORT_NAME), 8080, Some("TCP"))
    );
    let path = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    let port_of = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| h.port.clone())
    };
    assert_eq!(
        port_of(&c.liveness_probe),
        Some(IntOrString::String(HTTP_PORT_NAME.to_owned()))
    );
}

#[test]
fn apply_body_has_no_nulls_and_no_status() {
    // Server-side apply claims every field in the body: a null would fight other managers.
    let d = build(&fixtures::with_url());
    let body = serde_json::to_string(&d).expect("serializes");
    assert!(!body.contains("null"), "{body}");
    assert!(d.status.is_none());
}

/// A managed-Redis fleet: ACL password, private CA, client certificate.
fn managed_redis() -> ExactlyOnceConsumer {
    let mut cr = fixtures::with_url();
    cr.spec.redis.url = Some("rediss://redis.example:6380".to_owned());
    cr.spec.redis.credentials_secret_ref = Some(CredentialsSecretRef {
        name: "redis-acl".to_owned(),
        username_key: None,
        password_key: "password".to_owned(),
    });
    cr.spec.redis.tls = Some(RedisTls {
        ca_secret_ref: Some(CaSecretRef {
            name: "redis-ca".to_owned(),
            key: "ca.crt".to_owned(),
        }),
        client_cert_secret_ref: Some(SecretNameRef {
            name: "redis-client".to_owned(),
        }),
        insecure_skip_verify_for_tests_only: false,
    });
    cr
}

#[test]
fn tls_secrets_are_mounted_read_only_and_readable_by_the_consumer_group() {
    let d = build(&managed_redis());
    let p = pod(&d);
    let volumes: Vec<String> = p.volumes.iter().flatten().map(|v| v.name.clone()).collect();
    assert_eq!(volumes, ["tmp", TLS_CA_VOLUME, TLS_CLIENT_VOLUME]);
    let c = container(&d);
    let mounts: Vec<(String, String, Option<bool>)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("tmp".to_owned(), "/tmp".to_owned(), None),
            (
                TLS_CA_VOLUME.to_owned(),
                env::TLS_CA_MOUNT_DIR.to_owned(),
                Some(true)
            ),
            (
                TLS_CLIENT_VOLUME.to_owned(),
                env::TLS_CLIENT_MOUNT_DIR.to_owned(),
                Some(true)
            ),
        ]
    );
    // 0440 files are root-owned with the fsGroup as group: the consumer reads them through
    // its group, which must be that fsGroup.
    let psc = p.security_context.expect("pod security context");
    assert_eq!(psc.fs_group, Some(RUN_AS_USER));
    assert_eq!(psc.run_as_group, psc.fs_group);
    for volume in p.volumes.iter().flatten().filter(|v| v.secret.is_some()) {
        let mode = volume.secret.as_ref().and_then(|s| s.default_mode);
        assert_eq!(mode, Some(0o440), "{}", volume.name);
    }
    let env = env_map(&c);
    assert_eq!(
        value(&env, env::REDIS_TLS_CA_FILE),
        format!("{}/{}", env::TLS_CA_MOUNT_DIR, env::TLS_CA_FILE_NAME)
    );
    assert_eq!(
        value(&env, env::REDIS_TLS_KEY_FILE),
        format!("{}/{}", env::TLS_CLIENT_MOUNT_DIR, env::TLS_KEY_FILE_NAME)
    );
    assert!(env[env::REDIS_PASSWORD].value.is_none());
    assert!(!env.contains_key(env::REDIS_USERNAME));
    // The contract's variables come before the rest, each once.
    let names: Vec<String> = c.env.iter().flatten().map(|e| e.name.clone()).collect();
    assert_eq!(
        names,
        [
            env::REDIS_URL,
            env::REDIS_PASSWORD,
            env::REDIS_TLS_CA_FILE,
            env::REDIS_TLS_CERT_FILE,
            env::REDIS_TLS_KEY_FILE,
            env::CHANNEL,
            env::LOCK_TTL_MS,
            env::DELIVERY_MODE,
            env::CONSUMER_NAME,
            env::HTTP_ADDR
        ]
    );
}

#[test]
fn pointing_at_another_secret_changes_the_pod_template_so_pods_roll() {
    let before = build(&managed_redis()).spec.template;
    for edit in [
        |cr: &mut ExactlyOnceConsumer| {
            if let Some(c) = cr.spec.redis.credentials_secret_ref.as_mut() {
                c.name = "redis-acl-v2".to_owned();
            }
        },
        |cr: &mut ExactlyOnceConsumer| {
            if let Some(ca) = cr
                .spec
                .redis
                .tls
                .as_mut()
                .and_then(|t| t.ca_secret_ref.as_mut())
            {
                ca.name = "redis-ca-v2".to_owned();
            }
        },
        |cr: &mut ExactlyOnceConsumer| {
            if let Some(client) = cr
                .spec
                .redis
                .tls
                .as_mut()
                .and_then(|t| t.client_cert_secret_ref.as_mut())
            {
                client.name = "redis-client-v2".to_owned();
            }
        },
    ] {
        let mut cr = managed_redis();
        edit(&mut cr);
        assert_ne!(build(&cr).spec.template, before);
    }
}

#[test]
fn a_managed_redis_apply_body_has_no_nulls() {
    let body = serde_json::to_string(&build(&managed_redis())).expect("serializes");
    assert!(!body.contains("null"), "{body}");
}
