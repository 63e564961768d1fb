//! How a consumer pod reaches Redis: the URL, the ACL credentials and the TLS files of
//! `spec.redis`, turned into env vars, Secret volumes and mounts for the Deployment builder, and
//! into the list of Secrets and keys the reconciler checks before the pods would trip on them.
//! Pure, like the builder: every Secret reference of the spec is read here and nowhere else.

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use protocol::env;

use crate::crd::RedisSpec;

/// Owner and group may read, nobody else: the pod's `fsGroup` makes the consumer's group the
/// files' group, so the key of a client certificate is not world-readable in the container.
pub const SECRET_FILE_MODE: i32 = 0o440;
pub const TLS_CA_VOLUME: &str = "redis-tls-ca";
pub const TLS_CLIENT_VOLUME: &str = "redis-tls-client";

/// The path the consumer is told to read, from the same constants the mount is built from.
pub fn mounted_file(dir: &str, file_name: &str) -> String {
    format!("{dir}/{file_name}")
}

/// `REDIS_URL`, then the credentials and TLS variables the spec asks for; nothing for what it
/// leaves unset, so the consumer's own defaults (URL user, system roots) apply.
pub fn redis_env(redis: &RedisSpec) -> Vec<EnvVar> {
    let mut vars = vec![match (&redis.url, &redis.url_secret_ref) {
        (_, Some(secret)) => secret_env(env::REDIS_URL, &secret.name, &secret.key),
        // The CRD's CEL rule guarantees one of the two; an empty value lets the consumer refuse
        // to start with its own clear error rather than the operator guessing a URL.
        (url, None) => plain_env(env::REDIS_URL, url.clone().unwrap_or_default()),
    }];
    // Through secretKeyRef only: a credential copied into the Deployment would be readable by
    // anyone who can read Deployments.
    if let Some(credentials) = &redis.credentials_secret_ref {
        if let Some(username_key) = &credentials.username_key {
            vars.push(secret_env(
                env::REDIS_USERNAME,
                &credentials.name,
                username_key,
            ));
        }
        vars.push(secret_env(
            env::REDIS_PASSWORD,
            &credentials.name,
            &credentials.password_key,
        ));
    }
    if let Some(tls) = &redis.tls {
        if tls.ca_secret_ref.is_some() {
            vars.push(plain_env(
                env::REDIS_TLS_CA_FILE,
                mounted_file(env::TLS_CA_MOUNT_DIR, env::TLS_CA_FILE_NAME),
            ));
        }
        if tls.client_cert_secret_ref.is_some() {
            vars.push(plain_env(
                env::REDIS_TLS_CERT_FILE,
                mounted_file(env::TLS_CLIENT_MOUNT_DIR, env::TLS_CERT_FILE_NAME),
            ));
            vars.push(plain_env(
                env::REDIS_TLS_KEY_FILE,
                mounted_file(env::TLS_CLIENT_MOUNT_DIR, env::TLS_KEY_FILE_NAME),
            ));
        }
        if tls.insecure_skip_verify_for_tests_only {
            vars.push(plain_env(
                env::REDIS_TLS_INSECURE_SKIP_VERIFY,
                "true".to_owned(),
            ));
        }
    }
    vars
}

/// A Secret mounted as a directory of files: the volume and its mount are built from this one
/// description, so they cannot disagree on a name.
struct SecretMount {
    volume: &'static str,
    secret_name: String,
    dir: &'static str,
    /// (key in the Secret, file name in `dir`).
    files: Vec<(String, &'static str)>,
}

/// The CA bundle, renamed to `ca.crt` whatever its key, and the client certificate and key.
/// Only the listed keys are projected (`items`), so a cert-manager Secret's other keys stay out
/// of the pod.
///
/// Rotation: a change of the referenced Secret *names* changes the pod template and so rolls
/// the pods. A change of a Secret's *content* does not (env from secretKeyRef is read at pod
/// start); rolling on a content change needs a Secret watch and a rollout hash, not built yet.
fn secret_mounts(redis: &RedisSpec) -> Vec<SecretMount> {
    let Some(tls) = &redis.tls else {
        return Vec::new();
    };
    let mut mounts = Vec::new();
    if let Some(ca) = &tls.ca_secret_ref {
        mounts.push(SecretMount {
            volume: TLS_CA_VOLUME,
            secret_name: ca.name.clone(),
            dir: env::TLS_CA_MOUNT_DIR,
            files: vec![(ca.key.clone(), env::TLS_CA_FILE_NAME)],
        });
    }
    if let Some(client) = &tls.client_cert_secret_ref {
        mounts.push(SecretMount {
            volume: TLS_CLIENT_VOLUME,
            secret_name: client.name.clone(),
            dir: env::TLS_CLIENT_MOUNT_DIR,
            // A `kubernetes.io/tls` Secret's keys are fixed by Kubernetes; the contract names
            // the files after them.
            files: vec![
                (env::TLS_CERT_FILE_NAME.to_owned(), env::TLS_CERT_FILE_NAME),
                (env::TLS_KEY_FILE_NAME.to_owned(), env::TLS_KEY_FILE_NAME),
            ],
        });
    }
    mounts
}

pub fn tls_volumes(redis: &RedisSpec) -> Vec<Volume> {
    secret_mounts(redis)
        .into_iter()
        .map(|m| Volume {
            name: m.volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(m.secret_name),
                items: Some(
                    m.files
                        .into_iter()
                        .map(|(key, path)| KeyToPath {
                            key,
                            path: path.to_owned(),
                            ..KeyToPath::default()
                        })
                        .collect(),
                ),
                default_mode: Some(SECRET_FILE_MODE),
                optional: Some(false),
                // `defaultUser` (alpha, behind a feature gate) stays unset: fsGroup is enough.
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        })
        .collect()
}

pub fn tls_mounts(redis: &RedisSpec) -> Vec<VolumeMount> {
    secret_mounts(redis)
        .into_iter()
        .map(|m| VolumeMount {
            name: m.volume.to_owned(),
            mount_path: m.dir.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        })
        .collect()
}

/// What a key of a Secret must hold for the pods to start and connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyContent {
    /// Anything: the consumer reports a bad credential or certificate itself.
    Any,
    /// A `redis://` or `rediss://` URL; only `rediss://` when `tls` is set, since the API
    /// server cannot check a URL it does not see.
    RedisUrl { tls: bool },
}

/// A key the pods read, and the spec field that names it (for the message a user acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededKey {
    pub key: String,
    pub field: &'static str,
    pub content: KeyContent,
}

/// A Secret the pods read, named by `name_field`, and the keys they need from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretNeed {
    pub name: String,
    pub name_field: &'static str,
    pub keys: Vec<NeededKey>,
}

/// Every Secret `spec.redis` references, in spec order, with the keys the pods will read: a
/// missing one would leave the pods in `CreateContainerConfigError` or `ContainerCreating`.
pub fn secret_needs(redis: &RedisSpec) -> Vec<SecretNeed> {
    let mut needs = Vec::new();
    if let Some(url) = &redis.url_secret_ref {
        needs.push(SecretNeed {
            name: url.name.clone(),
            name_field: "spec.redis.urlSecretRef.name",
            keys: vec![NeededKey {
                key: url.key.clone(),
                field: "spec.redis.urlSecretRef.key",
                content: KeyContent::RedisUrl {
                    tls: redis.tls.is_some(),
                },
            }],
        });
    }
    if let Some(credentials) = &redis.credentials_secret_ref {
        let username = credentials.username_key.iter().map(|key| NeededKey {
            key: key.clone(),
            field: "spec.redis.credentialsSecretRef.usernameKey",
            content: KeyContent::Any,
        });
        let password = NeededKey {
            key: credentials.password_key.clone(),
            field: "spec.redis.credentialsSecretRef.passwordKey",
            content: KeyContent::Any,
        };
        needs.push(SecretNeed {
            name: credentials.name.clone(),
            name_field: "spec.redis.credentialsSecretRef.name",
            keys: username.chain([password]).collect(),
        });
    }
    let tls = redis.tls.as_ref();
    if let Some(ca) = tls.and_then(|tls| tls.ca_secret_ref.as_ref()) {
        needs.push(SecretNeed {
            name: ca.name.clone(),
            name_field: "spec.redis.tls.caSecretRef.name",
            keys: vec![NeededKey {
                key: ca.key.clone(),
                field: "spec.redis.tls.caSecretRef.key",
                content: KeyContent::Any,
            }],
        });
    }
    if let Some(client) = tls.and_then(|tls| tls.client_cert_secret_ref.as_ref()) {
        let field = "spec.redis.tls.clientCertSecretRef: a kubernetes.io/tls Secret";
        needs.push(SecretNeed {
            name: client.name.clone(),
            name_field: "spec.redis.tls.clientCertSecretRef.name",
            keys: [env::TLS_CERT_FILE_NAME, env::TLS_KEY_FILE_NAME]
                .into_iter()
                .map(|key| NeededKey {
                    key: key.to_owned(),
                    field,
                    content: KeyContent::Any,
                })
                .collect(),
        });
    }
    needs
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

pub(crate) fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

#[cfg(test)]
#[path = "redis_access_tests.rs"]
mod tests;
