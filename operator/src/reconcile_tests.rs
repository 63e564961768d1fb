//! The pure parts of the reconciler: Secret validation (one check for every reference, with
//! messages naming the field), backoff, error reasons.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::*;
use crate::crd::{CaSecretRef, CredentialsSecretRef, RedisTls, SecretNameRef};
use crate::fixtures;

/// The URL Secret of `fixtures::with_secret()`, as the reconciler checks it.
fn url_need() -> SecretNeed {
    secret_needs(&fixtures::with_secret().spec.redis).remove(0)
}

fn secret(entries: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

fn with_tls(mut redis: RedisSpec) -> RedisSpec {
    redis.tls = Some(RedisTls {
        ca_secret_ref: Some(CaSecretRef {
            name: "redis-ca".into(),
            key: "ca.crt".into(),
        }),
        client_cert_secret_ref: Some(SecretNameRef {
            name: "redis-client".into(),
        }),
        insecure_skip_verify_for_tests_only: false,
    });
    redis
}

/// The need for the Secret called `name` among those of `redis`.
fn need(redis: &RedisSpec, name: &str) -> SecretNeed {
    secret_needs(redis)
        .into_iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no need for secret {name}"))
}

#[test]
fn missing_secret_names_the_secret_and_the_field() {
    let p = secret_problem(None, &url_need()).expect("a problem");
    assert_eq!(p.reason, "SecretNotFound");
    assert_eq!(
        p.message,
        "secret redis-auth not found (spec.redis.urlSecretRef.name)"
    );
}

#[test]
fn missing_key_names_the_key() {
    let p = secret_problem(Some(&secret(&[("password", "x")])), &url_need()).expect("a problem");
    assert_eq!(p.reason, "SecretKeyNotFound");
    assert_eq!(
        p.message,
        "secret redis-auth has no key url (spec.redis.urlSecretRef.key)"
    );
    let p = secret_problem(Some(&Secret::default()), &url_need()).expect("a problem");
    assert_eq!(p.reason, "SecretKeyNotFound");
}

#[test]
fn a_value_that_is_not_a_redis_url_is_refused_without_quoting_it() {
    let p = secret_problem(
        Some(&secret(&[("url", "http://:hunter2@redis")])),
        &url_need(),
    )
    .expect("a problem");
    assert_eq!(p.reason, "InvalidRedisUrl");
    assert_eq!(
        p.message,
        "secret redis-auth key url must hold a redis:// or rediss:// URL (spec.redis.urlSecretRef.key)"
    );
}

#[test]
fn a_url_with_a_fragment_is_refused_it_could_skip_tls_verification() {
    let p = secret_problem(
        Some(&secret(&[(
            "url",
            "rediss://:hunter2@redis:6380/#insecure",
        )])),
        &url_need(),
    )
    .expect("a problem");
    assert_eq!(p.reason, "InvalidRedisUrl");
    assert!(
        p.message.contains("must not carry a #fragment"),
        "{}",
        p.message
    );
    assert!(!p.message.contains("hunter2"), "{}", p.message);
}

#[test]
fn a_good_secret_is_no_problem() {
    assert_eq!(
        secret_problem(
            Some(&secret(&[("url", "rediss://:pw@redis:6380\n")])),
            &url_need()
        ),
        None
    );
}

#[test]
fn with_tls_a_plain_redis_url_in_the_secret_is_refused() {
    let redis = with_tls(fixtures::with_secret().spec.redis);
    let need = need(&redis, "redis-auth");
    let p = secret_problem(
        Some(&secret(&[("url", "redis://:hunter2@redis:6379")])),
        &need,
    )
    .expect("a problem");
    assert_eq!(p.reason, "InvalidRedisUrl");
    assert_eq!(
        p.message,
        "secret redis-auth key url must hold a rediss:// URL because spec.redis.tls is set (spec.redis.urlSecretRef.key)"
    );
    assert!(!p.message.contains("hunter2"));
    assert_eq!(
        secret_problem(Some(&secret(&[("url", "rediss://redis:6380")])), &need),
        None
    );
}

#[test]
fn credentials_secret_needs_the_password_key_and_the_username_key_if_named() {
    let mut redis = fixtures::with_url().spec.redis;
    redis.credentials_secret_ref = Some(CredentialsSecretRef {
        name: "redis-acl".into(),
        username_key: Some("username".into()),
        password_key: "password".into(),
    });
    let need = need(&redis, "redis-acl");
    let p = secret_problem(None, &need).expect("a problem");
    assert_eq!(
        p.message,
        "secret redis-acl not found (spec.redis.credentialsSecretRef.name)"
    );
    let p = secret_problem(Some(&secret(&[("username", "orders")])), &need).expect("a problem");
    assert_eq!(p.reason, "SecretKeyNotFound");
    assert_eq!(
        p.message,
        "secret redis-acl has no key password (spec.redis.credentialsSecretRef.passwordKey)"
    );
    let p = secret_problem(Some(&secret(&[("password", "hunter2")])), &need).expect("a problem");
    assert_eq!(
        p.message,
        "secret redis-acl has no key username (spec.redis.credentialsSecretRef.usernameKey)"
    );
    let both = secret(&[("username", "orders"), ("password", "hunter2")]);
    assert_eq!(secret_problem(Some(&both), &need), None);
}

#[test]
fn tls_secrets_need_their_keys() {
    let redis = with_tls(fixtures::with_url().spec.redis);
    let ca = need(&redis, "redis-ca");
    let p = secret_problem(Some(&secret(&[("tls.crt", "x")])), &ca).expect("a problem");
    assert_eq!(
        p.message,
        "secret redis-ca has no key ca.crt (spec.redis.tls.caSecretRef.key)"
    );
    assert_eq!(
        secret_problem(Some(&secret(&[("ca.crt", "PEM")])), &ca),
        None
    );

    let client = need(&redis, "redis-client");
    let p = secret_problem(None, &client).expect("a problem");
    assert_eq!(
        p.message,
        "secret redis-client not found (spec.redis.tls.clientCertSecretRef.name)"
    );
    let p = secret_problem(Some(&secret(&[("tls.crt", "PEM")])), &client).expect("a problem");
    assert_eq!(
        p.message,
        "secret redis-client has no key tls.key (spec.redis.tls.clientCertSecretRef: a kubernetes.io/tls Secret)"
    );
    let tls_secret = secret(&[("tls.crt", "PEM"), ("tls.key", "KEY"), ("ca.crt", "PEM")]);
    assert_eq!(secret_problem(Some(&tls_secret), &client), None);
}

#[test]
fn no_message_carries_a_secret_value() {
    let redis = with_tls(fixtures::with_secret().spec.redis);
    let value = "s3cr3t-value";
    // Every key holds the secret value, one is missing each time, or the URL is wrong.
    for need in secret_needs(&redis) {
        for missing in 0..need.keys.len() {
            let entries: Vec<(&str, &str)> = need
                .keys
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, k)| (k.key.as_str(), value))
                .collect();
            if let Some(p) = secret_problem(Some(&secret(&entries)), &need) {
                assert!(!p.message.contains(value), "{}", p.message);
            }
        }
    }
}

#[test]
fn backoff_doubles_per_failure_and_is_capped() {
    let secs: Vec<u64> = [1, 2, 3, 4, 8, 9, 50, u32::MAX]
        .iter()
        .map(|n| backoff_delay(*n).as_secs())
        .collect();
    assert_eq!(secs, [2, 4, 8, 16, 256, 300, 300, 300]);
    assert_eq!(backoff_delay(0).as_secs(), 2);
}

#[test]
fn error_messages_name_the_resource_and_reason() {
    let e = Error::Build(BuildError::MissingUid("inventory".into()));
    assert_eq!(e.reason(), "InvalidResource");
    assert!(e.to_string().contains("metadata.uid"), "{e}");
}
