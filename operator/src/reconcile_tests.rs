//! The pure parts of the reconciler: Secret validation, backoff, error reasons.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::*;

fn reference() -> SecretKeyRef {
    SecretKeyRef {
        name: "redis-auth".into(),
        key: "url".into(),
    }
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

#[test]
fn missing_secret_names_the_secret_and_the_field() {
    let p = secret_problem(None, &reference()).expect("a problem");
    assert_eq!(p.reason, "SecretNotFound");
    assert_eq!(
        p.message,
        "secret redis-auth not found (spec.redis.urlSecretRef.name)"
    );
}

#[test]
fn missing_key_names_the_key() {
    let p = secret_problem(Some(&secret(&[("password", "x")])), &reference()).expect("a problem");
    assert_eq!(p.reason, "SecretKeyNotFound");
    assert_eq!(
        p.message,
        "secret redis-auth has no key url (spec.redis.urlSecretRef.key)"
    );
    let p = secret_problem(Some(&Secret::default()), &reference()).expect("a problem");
    assert_eq!(p.reason, "SecretKeyNotFound");
}

#[test]
fn a_value_that_is_not_a_redis_url_is_refused() {
    let p =
        secret_problem(Some(&secret(&[("url", "http://redis")])), &reference()).expect("a problem");
    assert_eq!(p.reason, "InvalidRedisUrl");
}

#[test]
fn a_good_secret_is_no_problem() {
    assert_eq!(
        secret_problem(
            Some(&secret(&[("url", "rediss://:pw@redis:6380\n")])),
            &reference()
        ),
        None
    );
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
