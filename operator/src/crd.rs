//! The `ExactlyOnceConsumer` custom resource: the one object a user writes to run a consumer
//! fleet. Every validation the API server can do (ranges, patterns, cross-field CEL rules) is
//! declared here, so a bad spec is refused at `kubectl apply` instead of surfacing in a pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use protocol::DeliveryMode;
use serde::{Deserialize, Serialize};

/// The consumer image this operator release deploys when `spec.image` is unset.
pub const DEFAULT_IMAGE: &str =
    concat!("exactlyonce/inventory-consumer:", env!("CARGO_PKG_VERSION"));

/// A Secret's name: a DNS subdomain, as the API server requires.
const SECRET_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key of a Secret's data, as the API server requires.
const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// Desired state of a fleet of exactly-once inventory consumers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactlyonce.dev",
    version = "v1alpha1",
    kind = "ExactlyOnceConsumer",
    plural = "exactlyonceconsumers",
    shortname = "eoc",
    category = "exactlyonce",
    namespaced,
    status = "ExactlyOnceConsumerStatus",
    derive = "PartialEq",
    doc = "A fleet of inventory consumers that apply each accepted order exactly once.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas", description = "Desired consumer pods"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Consumer pods passing /readyz"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.deliveryMode", description = "pubsub or streams"),
    printcolumn(name = "Channel", type_ = "string", json_path = ".spec.channel", description = "Redis channel or stream"),
    printcolumn(name = "Lock TTL", type_ = "integer", json_path = ".spec.lockTtlMs", description = "Order lock TTL in milliseconds"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // The name becomes the `app.kubernetes.io/instance` label (63 characters at most) and, with
    // the `-consumer` suffix, the Deployment name; refusing longer names here keeps both valid.
    validation = Rule::new("size(self.metadata.name) <= 54").message("metadata.name must be at most 54 characters: it becomes a label value and, with the -consumer suffix, the Deployment name")
)]
#[serde(rename_all = "camelCase")]
pub struct ExactlyOnceConsumerSpec {
    /// Number of consumer pods. Also the target of `kubectl scale eoc/NAME` and of autoscalers.
    /// Zero stops consuming while keeping accepted orders durable in Redis.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Where the consumers find Redis (exactly one of `url` or `urlSecretRef`), and optionally
    /// the ACL credentials (`credentialsSecretRef`) and TLS settings (`tls`) it requires.
    pub redis: RedisSpec,

    /// Redis Pub/Sub channel (pubsub mode) or stream key (streams mode) the orders arrive on.
    /// 1 to 128 characters from letters, digits and `.`, `_`, `:`, `-`, starting with a letter or
    /// digit: no glob characters (`*?[]`) that would make it a pattern, no braces that would
    /// clash with the Redis Cluster hash tags of the key layout, no whitespace.
    #[serde(default = "default_channel")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    )]
    pub channel: String,

    /// How long, in milliseconds, a consumer holds an order's lock; also how long an order whose
    /// consumer died waits before another replica takes it over. 100 to 3600000.
    #[serde(default = "default_lock_ttl_ms")]
    #[schemars(range(min = 100, max = 3_600_000))]
    pub lock_ttl_ms: i64,

    /// `pubsub`: every replica hears every order and a lock picks the one that applies it.
    /// `streams`: a Redis Streams consumer group hands each order to one replica.
    #[serde(default)]
    pub delivery_mode: DeliveryMode,

    /// Consumer container image. Unset means the consumer image of the operator's release
    /// (`exactlyonce/inventory-consumer:<operator version>`), so upgrading the operator
    /// upgrades the fleet; set it to pin a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// When the kubelet pulls the image: `Always`, `IfNotPresent` or `Never`. Unset uses the
    /// Kubernetes default (`Always` for `:latest`, otherwise `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_pull_policy_schema")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU and memory requests and limits of the consumer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a node must carry to run consumer pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the consumer pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node and pod (anti-)affinity of the consumer pods, e.g. to spread them across zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Extra annotations on the consumer pods (e.g. for a service mesh or a log shipper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Extra labels on the consumer pods. The operator's selector labels
    /// (`app.kubernetes.io/name`, `app.kubernetes.io/instance`) cannot be overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!('app.kubernetes.io/name' in self) && !('app.kubernetes.io/instance' in self)").message("podLabels must not set app.kubernetes.io/name or app.kubernetes.io/instance: the operator owns the pod selector"))]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// Service account the consumer pods run as. The consumers never call the Kubernetes API,
    /// so no token is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// Secrets holding registry credentials for pulling a private consumer image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

/// Where the consumers find Redis, and how they authenticate to it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("redis: set exactly one of url or urlSecretRef"),
    // A `redis://` URL would connect in plain text and ignore every TLS setting; a URL kept in a
    // Secret is checked by the operator instead (the API server cannot read it).
    validation = Rule::new("!has(self.tls) || !has(self.url) || self.url.startsWith('rediss://')").message("redis.tls requires redis.url to start with rediss:// (a redis:// URL does not use TLS): change the scheme or remove redis.tls")
)]
pub struct RedisSpec {
    /// Redis URL, `redis://` or `rediss://` (TLS), e.g. `redis://redis:6379/0`. It is stored in
    /// plain text in the resource: use `urlSecretRef` when the URL carries a password, or keep
    /// the password in `credentialsSecretRef`. With `tls` set it must be `rediss://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^rediss?://[^\s#]+$"))]
    pub url: Option<String>,

    /// A key of a Secret in this namespace whose value is the Redis URL. With `tls` set, the
    /// value must be a `rediss://` URL (the operator checks it and reports `Degraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,

    /// A Secret in this namespace holding the Redis ACL password (and optionally the user
    /// name), for managed Redis with ACL users (Redis Cloud, ElastiCache, Memorystore). They
    /// override any user and password in the URL. The pods read them through `secretKeyRef`,
    /// so they never appear in the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,

    /// TLS settings for a `rediss://` URL: the CA that signs the server's certificate and an
    /// optional client certificate for mutual TLS. Without this block a `rediss://` URL still
    /// uses TLS, verified against the image's system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
}

/// A key in a Secret of the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretKeyRef {
    /// Name of the Secret (a DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = SECRET_NAME_PATTERN)
    )]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// The Secret holding the Redis ACL user's password, and optionally its name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret in this namespace (a DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = SECRET_NAME_PATTERN)
    )]
    pub name: String,
    /// Key of the Secret holding the ACL user name (env `REDIS_USERNAME`). Unset: the
    /// consumers authenticate as the URL's user, else as Redis' `default` user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub username_key: Option<String>,
    /// Key of the Secret holding the password (env `REDIS_PASSWORD`).
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub password_key: String,
}

/// How the consumers verify the Redis server and prove who they are, over `rediss://`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.insecureSkipVerifyForTestsOnly) && self.insecureSkipVerifyForTestsOnly && (has(self.caSecretRef) || has(self.clientCertSecretRef)))").message("redis.tls: insecureSkipVerifyForTestsOnly excludes caSecretRef and clientCertSecretRef: a CA to verify the server against contradicts skipping verification, and the consumer presents a client certificate only on a verified connection"))]
pub struct RedisTls {
    /// A Secret key holding the PEM bundle of the CAs that sign the Redis server's
    /// certificate (e.g. a private CA, or the ElastiCache/Memorystore server CA). Mounted
    /// read-only into the pods. Unset: the image's system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,

    /// A `kubernetes.io/tls` Secret (keys `tls.crt` and `tls.key`) whose certificate the
    /// consumers present, for Redis servers that require mutual TLS. Mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretNameRef>,

    /// FOR TESTS ONLY: accept any server certificate, so anyone on the network path can
    /// impersonate Redis and read every order. Meant for throwaway test certificates; never
    /// set it against a real server. Cannot be combined with `caSecretRef` or
    /// `clientCertSecretRef`: skipping verification takes no CA and no client certificate.
    #[serde(default)]
    pub insecure_skip_verify_for_tests_only: bool,
}

/// A key of a Secret in this namespace holding a PEM CA bundle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CaSecretRef {
    /// Name of the Secret (a DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = SECRET_NAME_PATTERN)
    )]
    pub name: String,
    /// Key within the Secret's data. The default, `ca.crt`, is where cert-manager and
    /// `kubernetes.io/tls` Secrets keep the CA.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// A Secret of the resource's namespace, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretNameRef {
    /// Name of the Secret (a DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = SECRET_NAME_PATTERN)
    )]
    pub name: String,
}

/// Image pull policy of the consumer container.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// Observed state of the fleet, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExactlyOnceConsumerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Consumer pods that exist (the scale subresource's current replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Consumer pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the consumer pods, for autoscalers reading the scale subresource.
    #[serde(default)]
    pub selector: String,
    /// Name of the Deployment that runs the consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// `Available`, `Progressing` and `Degraded`; `lastTransitionTime` moves only when a
    /// condition's status flips.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// schemars lists `null` among the enum values of an `Option<enum>`; the API server's
/// structural-schema check wants only the real values, with `nullable` saying the rest.
fn optional_pull_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Always", "IfNotPresent", "Never"],
        "nullable": true,
    })
}

/// Where the Bitnami chart, most guides and `kubectl create secret generic --from-literal`
/// examples put a Redis password.
fn default_password_key() -> String {
    "password".to_owned()
}

/// cert-manager's and `kubernetes.io/tls` Secrets' key for the CA; the same name as the
/// mounted file, so the default needs no renaming.
fn default_ca_key() -> String {
    protocol::env::TLS_CA_FILE_NAME.to_owned()
}

fn default_replicas() -> i32 {
    3
}

fn default_channel() -> String {
    protocol::env::DEFAULT_CHANNEL.to_owned()
}

fn default_lock_ttl_ms() -> i64 {
    // The protocol constant is a small literal (5000); the conversion cannot fail.
    i64::try_from(protocol::env::DEFAULT_LOCK_TTL_MS).expect("DEFAULT_LOCK_TTL_MS fits in i64")
}

impl ExactlyOnceConsumerSpec {
    /// A spec with every default and the given Redis URL: what `kubectl apply` of a manifest
    /// naming only `redis.url` becomes after API-server defaulting.
    pub fn with_redis_url(url: impl Into<String>) -> Self {
        Self {
            replicas: default_replicas(),
            redis: RedisSpec {
                url: Some(url.into()),
                ..RedisSpec::default()
            },
            channel: default_channel(),
            lock_ttl_ms: default_lock_ttl_ms(),
            delivery_mode: DeliveryMode::default(),
            image: None,
            image_pull_policy: None,
            resources: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            pod_annotations: None,
            pod_labels: None,
            service_account_name: None,
            image_pull_secrets: None,
        }
    }

    /// The image to run: the pinned one, else this release's consumer image.
    pub fn image_or_default(&self) -> &str {
        self.image.as_deref().unwrap_or(DEFAULT_IMAGE)
    }
}

/// The CRD as YAML, exactly what `crdgen` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&ExactlyOnceConsumer::crd())
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
