//! Each combination of `spec.redis` references: the env vars, the Secret volumes and mounts, and
//! the Secrets and keys the reconciler checks.

use std::collections::BTreeMap;

use super::*;
use crate::crd::{CaSecretRef, CredentialsSecretRef, RedisTls, SecretKeyRef, SecretNameRef};

fn inline(url: &str) -> RedisSpec {
    RedisSpec {
        url: Some(url.to_owned()),
        ..RedisSpec::default()
    }
}

fn credentials(username_key: Option<&str>) -> CredentialsSecretRef {
    CredentialsSecretRef {
        name: "redis-acl".to_owned(),
        username_key: username_key.map(str::to_owned),
        password_key: "password".to_owned(),
    }
}

fn ca(key: &str) -> CaSecretRef {
    CaSecretRef {
        name: "redis-ca".to_owned(),
        key: key.to_owned(),
    }
}

fn client() -> SecretNameRef {
    SecretNameRef {
        name: "redis-client".to_owned(),
    }
}

/// Everything at once: ACL user and password, a private CA and a client certificate.
fn everything() -> RedisSpec {
    RedisSpec {
        credentials_secret_ref: Some(credentials(Some("username"))),
        tls: Some(RedisTls {
            ca_secret_ref: Some(ca("bundle.pem")),
            client_cert_secret_ref: Some(client()),
            insecure_skip_verify_for_tests_only: false,
        }),
        ..inline("rediss://redis.example:6380")
    }
}

fn names(vars: &[EnvVar]) -> Vec<&str> {
    vars.iter().map(|v| v.name.as_str()).collect()
}

fn by_name(vars: &[EnvVar]) -> BTreeMap<&str, &EnvVar> {
    vars.iter().map(|v| (v.name.as_str(), v)).collect()
}

/// (secret, key) of a secretKeyRef variable, asserting it carries no plain value.
fn secret_ref<'a>(vars: &'a [EnvVar], name: &str) -> (&'a str, &'a str) {
    let var = by_name(vars)[name];
    assert_eq!(var.value, None, "{name} must not be a plain value");
    let selector = var
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap_or_else(|| panic!("{name} is not a secretKeyRef"));
    assert_eq!(selector.optional, Some(false));
    (selector.name.as_str(), selector.key.as_str())
}

fn value<'a>(vars: &'a [EnvVar], name: &str) -> &'a str {
    by_name(vars)[name]
        .value
        .as_deref()
        .unwrap_or_else(|| panic!("{name} has no plain value"))
}

#[test]
fn a_plain_url_needs_no_secret_no_volume_and_only_redis_url() {
    let redis = inline("redis://redis:6379");
    assert_eq!(names(&redis_env(&redis)), [env::REDIS_URL]);
    assert_eq!(
        value(&redis_env(&redis), env::REDIS_URL),
        "redis://redis:6379"
    );
    assert!(tls_volumes(&redis).is_empty());
    assert!(tls_mounts(&redis).is_empty());
    assert!(secret_needs(&redis).is_empty());
}

#[test]
fn credentials_come_from_secret_key_refs_never_as_values() {
    let redis = RedisSpec {
        credentials_secret_ref: Some(credentials(Some("user"))),
        ..inline("redis://redis:6379")
    };
    let vars = redis_env(&redis);
    assert_eq!(
        names(&vars),
        [env::REDIS_URL, env::REDIS_USERNAME, env::REDIS_PASSWORD]
    );
    assert_eq!(
        secret_ref(&vars, env::REDIS_USERNAME),
        ("redis-acl", "user")
    );
    assert_eq!(
        secret_ref(&vars, env::REDIS_PASSWORD),
        ("redis-acl", "password")
    );
    // Credentials are env only: nothing is mounted.
    assert!(tls_volumes(&redis).is_empty());
}

#[test]
fn without_a_username_key_only_the_password_is_injected() {
    // No REDIS_USERNAME: the consumer keeps the URL's user, else Redis' `default` user.
    let redis = RedisSpec {
        credentials_secret_ref: Some(credentials(None)),
        ..inline("redis://redis:6379")
    };
    assert_eq!(
        names(&redis_env(&redis)),
        [env::REDIS_URL, env::REDIS_PASSWORD]
    );
}

#[test]
fn an_empty_tls_block_means_system_roots_and_adds_nothing() {
    let redis = RedisSpec {
        tls: Some(RedisTls::default()),
        ..inline("rediss://redis:6380")
    };
    assert_eq!(names(&redis_env(&redis)), [env::REDIS_URL]);
    assert!(tls_volumes(&redis).is_empty());
    assert!(secret_needs(&redis).is_empty());
}

#[test]
fn a_ca_is_mounted_as_ca_crt_whatever_its_key_and_named_in_env() {
    let redis = RedisSpec {
        tls: Some(RedisTls {
            ca_secret_ref: Some(ca("bundle.pem")),
            ..RedisTls::default()
        }),
        ..inline("rediss://redis:6380")
    };
    let vars = redis_env(&redis);
    assert_eq!(names(&vars), [env::REDIS_URL, env::REDIS_TLS_CA_FILE]);
    assert_eq!(
        value(&vars, env::REDIS_TLS_CA_FILE),
        "/etc/exactly-once/redis-tls/ca/ca.crt"
    );
    let volumes = tls_volumes(&redis);
    assert_eq!(volumes.len(), 1);
    let secret = volumes[0].secret.as_ref().expect("a secret volume");
    assert_eq!(volumes[0].name, TLS_CA_VOLUME);
    assert_eq!(secret.secret_name.as_deref(), Some("redis-ca"));
    let items: Vec<(&str, &str)> = secret
        .items
        .iter()
        .flatten()
        .map(|i| (i.key.as_str(), i.path.as_str()))
        .collect();
    assert_eq!(items, [("bundle.pem", "ca.crt")]);
    assert_eq!(secret.default_mode, Some(0o440));
    assert_eq!(secret.optional, Some(false));
    let mounts = tls_mounts(&redis);
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        (
            mounts[0].name.as_str(),
            mounts[0].mount_path.as_str(),
            mounts[0].read_only
        ),
        (TLS_CA_VOLUME, env::TLS_CA_MOUNT_DIR, Some(true))
    );
}

#[test]
fn a_client_certificate_mounts_tls_crt_and_tls_key_only() {
    let redis = RedisSpec {
        tls: Some(RedisTls {
            client_cert_secret_ref: Some(client()),
            ..RedisTls::default()
        }),
        ..inline("rediss://redis:6380")
    };
    let vars = redis_env(&redis);
    assert_eq!(
        names(&vars),
        [
            env::REDIS_URL,
            env::REDIS_TLS_CERT_FILE,
            env::REDIS_TLS_KEY_FILE
        ]
    );
    assert_eq!(
        value(&vars, env::REDIS_TLS_CERT_FILE),
        "/etc/exactly-once/redis-tls/client/tls.crt"
    );
    assert_eq!(
        value(&vars, env::REDIS_TLS_KEY_FILE),
        "/etc/exactly-once/redis-tls/client/tls.key"
    );
    let volumes = tls_volumes(&redis);
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].name, TLS_CLIENT_VOLUME);
    let secret = volumes[0].secret.as_ref().expect("a secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("redis-client"));
    // A cert-manager Secret also carries ca.crt: only the certificate and key are projected.
    let items: Vec<(&str, &str)> = secret
        .items
        .iter()
        .flatten()
        .map(|i| (i.key.as_str(), i.path.as_str()))
        .collect();
    assert_eq!(items, [("tls.crt", "tls.crt"), ("tls.key", "tls.key")]);
    assert_eq!(secret.default_mode, Some(0o440));
    let mounts = tls_mounts(&redis);
    assert_eq!(
        (mounts[0].mount_path.as_str(), mounts[0].read_only),
        (env::TLS_CLIENT_MOUNT_DIR, Some(true))
    );
}

#[test]
fn insecure_skip_verify_is_set_only_when_asked_for() {
    let mut tls = RedisTls {
        client_cert_secret_ref: Some(client()),
        ..RedisTls::default()
    };
    let redis = |tls: &RedisTls| RedisSpec {
        tls: Some(tls.clone()),
        ..inline("rediss://redis:6380")
    };
    assert!(!names(&redis_env(&redis(&tls))).contains(&env::REDIS_TLS_INSECURE_SKIP_VERIFY));
    tls.insecure_skip_verify_for_tests_only = true;
    let vars = redis_env(&redis(&tls));
    assert_eq!(value(&vars, env::REDIS_TLS_INSECURE_SKIP_VERIFY), "true");
    assert_eq!(
        env::REDIS_TLS_INSECURE_SKIP_VERIFY,
        "REDIS_TLS_INSECURE_SKIP_VERIFY_FOR_TESTS_ONLY",
        "the pod spec must say what the switch is for"
    );
}

#[test]
fn everything_together_each_variable_once_in_a_stable_order() {
    let vars = redis_env(&everything());
    assert_eq!(
        names(&vars),
        [
            env::REDIS_URL,
            env::REDIS_USERNAME,
            env::REDIS_PASSWORD,
            env::REDIS_TLS_CA_FILE,
            env::REDIS_TLS_CERT_FILE,
            env::REDIS_TLS_KEY_FILE,
        ]
    );
    let volumes: Vec<String> = tls_volumes(&everything())
        .into_iter()
        .map(|v| v.name)
        .collect();
    let mounts: Vec<String> = tls_mounts(&everything())
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(volumes, [TLS_CA_VOLUME, TLS_CLIENT_VOLUME]);
    assert_eq!(mounts, volumes, "every volume is mounted, and only those");
}

#[test]
fn the_url_from_a_secret_stays_a_secret_key_ref() {
    let redis = RedisSpec {
        url_secret_ref: Some(SecretKeyRef {
            name: "redis-auth".to_owned(),
            key: "url".to_owned(),
        }),
        ..RedisSpec::default()
    };
    assert_eq!(
        secret_ref(&redis_env(&redis), env::REDIS_URL),
        ("redis-auth", "url")
    );
}

#[test]
fn secret_needs_list_every_reference_with_its_field() {
    let mut redis = everything();
    redis.url = None;
    redis.url_secret_ref = Some(SecretKeyRef {
        name: "redis-auth".to_owned(),
        key: "url".to_owned(),
    });
    let key = |key: &str, field: &'static str| NeededKey {
        key: key.to_owned(),
        field,
        content: KeyContent::Any,
    };
    let client_field = "spec.redis.tls.clientCertSecretRef: a kubernetes.io/tls Secret";
    assert_eq!(
        secret_needs(&redis),
        [
            SecretNeed {
                name: "redis-auth".to_owned(),
                name_field: "spec.redis.urlSecretRef.name",
                keys: vec![NeededKey {
                    content: KeyContent::RedisUrl { tls: true },
                    ..key("url", "spec.redis.urlSecretRef.key")
                }],
            },
            SecretNeed {
                name: "redis-acl".to_owned(),
                name_field: "spec.redis.credentialsSecretRef.name",
                keys: vec![
                    key("username", "spec.redis.credentialsSecretRef.usernameKey"),
                    key("password", "spec.redis.credentialsSecretRef.passwordKey"),
                ],
            },
            SecretNeed {
                name: "redis-ca".to_owned(),
                name_field: "spec.redis.tls.caSecretRef.name",
                keys: vec![key("bundle.pem", "spec.redis.tls.caSecretRef.key")],
            },
            SecretNeed {
                name: "redis-client".to_owned(),
                name_field: "spec.redis.tls.clientCertSecretRef.name",
                keys: vec![key("tls.crt", client_field), key("tls.key", client_field)],
            },
        ]
    );
}

#[test]
fn a_url_secret_must_hold_rediss_when_tls_is_set() {
    let mut redis = RedisSpec {
        url_secret_ref: Some(SecretKeyRef {
            name: "redis-auth".to_owned(),
            key: "url".to_owned(),
        }),
        ..RedisSpec::default()
    };
    let content = |redis: &RedisSpec| secret_needs(redis)[0].keys[0].content;
    assert_eq!(content(&redis), KeyContent::RedisUrl { tls: false });
    redis.tls = Some(RedisTls::default());
    assert_eq!(content(&redis), KeyContent::RedisUrl { tls: true });
}
