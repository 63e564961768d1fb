//! Managed Redis as README installs it (its helm flags, its kustomize overlay, the access it
//! gives), and the readers that put the order service's and a fleet's Redis credentials and TLS
//! files in the CRD's terms, so the two can be compared.

use std::collections::BTreeMap;

use protocol::env::{
    TLS_CA_FILE_NAME, TLS_CA_MOUNT_DIR, TLS_CERT_FILE_NAME, TLS_CLIENT_MOUNT_DIR, TLS_KEY_FILE_NAME,
};
use serde_json::{Value, json};

use super::{Env, Render, array, render_overlay};

/// README's "Managed Redis" helm flags, mutual TLS included.
pub const MANAGED_REDIS: [&str; 7] = [
    "redis.enabled=false",
    "redis.url=rediss://my-redis.example.com:6380",
    "redis.credentialsSecret.name=exactly-once-redis-credentials",
    "redis.credentialsSecret.usernameKey=username",
    "redis.tls.enabled=true",
    "redis.tls.caSecret.name=exactly-once-redis-ca",
    "redis.tls.clientCertSecret.name=exactly-once-redis-client",
];

/// What README's "Managed Redis" gives the order service and the sample fleet, with either
/// installer: the Secret names are the kustomize component's.
pub fn managed_redis_access() -> Value {
    json!({
        "credentials": {
            "name": "exactly-once-redis-credentials",
            "usernameKey": "username",
            "passwordKey": "password",
        },
        "ca": { "name": "exactly-once-redis-ca", "key": "ca.crt" },
        "clientCert": { "name": "exactly-once-redis-client" },
        "insecureSkipVerify": false,
    })
}

/// README's "Managed Redis" overlay, mutual TLS included.
pub fn managed_redis_overlay() -> Render {
    render_overlay("README managed Redis overlay", |deploy| {
        format!(
            "resources: [{deploy}]\n\
             configMapGenerator:\n\
             \x20 - name: exactly-once-pipeline\n\
             \x20   behavior: merge\n\
             \x20   literals: [REDIS_URL=rediss://my-redis.example.com:6380]\n\
             components:\n\
             \x20 - {deploy}/components/pipeline\n\
             \x20 - {deploy}/components/managed-redis\n\
             \x20 - {deploy}/components/managed-redis-mtls\n"
        )
    })
}

/// The Redis credentials and TLS files the order service uses, in the CRD's terms (see
/// [`fleet_redis_access`]): its environment, resolved through its mounts to Secrets.
pub fn order_service_redis_access(
    pod: &Value,
    container: &Value,
    env: &BTreeMap<String, Env>,
) -> Result<Value, String> {
    let from_secret = |var: &str| match env.get(var) {
        None => Ok(None),
        Some(Env::Secret(reference)) => Ok(Some(reference.clone())),
        Some(other) => Err(format!("{var} is {other:?}, not a Secret's key")),
    };
    let credentials = match (
        from_secret("REDIS_USERNAME")?,
        from_secret("REDIS_PASSWORD")?,
    ) {
        (None, None) => Value::Null,
        (Some(_), None) => return Err("REDIS_USERNAME without REDIS_PASSWORD".to_owned()),
        (user, Some(password)) => {
            // The CRD names one Secret for both.
            if user.as_ref().is_some_and(|u| u["name"] != password["name"]) {
                return Err("REDIS_USERNAME and REDIS_PASSWORD from two Secrets".to_owned());
            }
            json!({
                "name": password["name"],
                "usernameKey": user.map(|u| u["key"].clone()),
                "passwordKey": password["key"],
            })
        }
    };
    let mounted =
        |var: &str, dir: &str, file: &str| mounted_secret_key(pod, container, env, var, dir, file);
    let ca = mounted("REDIS_TLS_CA_FILE", TLS_CA_MOUNT_DIR, TLS_CA_FILE_NAME)?
        .map(|(name, key)| json!({ "name": name, "key": key }));
    let cert = mounted(
        "REDIS_TLS_CERT_FILE",
        TLS_CLIENT_MOUNT_DIR,
        TLS_CERT_FILE_NAME,
    )?;
    let key = mounted(
        "REDIS_TLS_KEY_FILE",
        TLS_CLIENT_MOUNT_DIR,
        TLS_KEY_FILE_NAME,
    )?;
    // A kubernetes.io/tls Secret, as the CRD's clientCertSecretRef names it: both keys, as is.
    let client_cert = match (cert, key) {
        (None, None) => Value::Null,
        (Some((name, cert)), Some((other, key)))
            if name == other && cert == TLS_CERT_FILE_NAME && key == TLS_KEY_FILE_NAME =>
        {
            json!({ "name": name })
        }
        (cert, key) => return Err(format!("client certificate {cert:?} and key {key:?}")),
    };
    let insecure = env.get("REDIS_TLS_INSECURE_SKIP_VERIFY_FOR_TESTS_ONLY");
    Ok(json!({
        "credentials": credentials,
        "ca": ca,
        "clientCert": client_cert,
        "insecureSkipVerify": insecure == Some(&Env::Literal("true".to_owned())),
    }))
}

/// The Secret and key behind the file that `var` names, which must be `dir/file` on a
/// read-only mount of a Secret volume; `None` when `var` is unset.
pub fn mounted_secret_key(
    pod: &Value,
    container: &Value,
    env: &BTreeMap<String, Env>,
    var: &str,
    dir: &str,
    file: &str,
) -> Result<Option<(String, String)>, String> {
    let path = match env.get(var) {
        None => return Ok(None),
        Some(Env::Literal(path)) => path,
        Some(other) => return Err(format!("{var} is {other:?}")),
    };
    if *path != format!("{dir}/{file}") {
        return Err(format!("{var} is {path}, not the contract's {dir}/{file}"));
    }
    let mount = array(&container["volumeMounts"])
        .find(|m| m["mountPath"] == dir)
        .ok_or_else(|| format!("{var}: nothing is mounted at {dir}"))?;
    if mount["readOnly"] != true {
        return Err(format!("{dir} is not mounted read-only"));
    }
    let volume = array(&pod["volumes"])
        .find(|v| v["name"] == mount["name"])
        .ok_or_else(|| format!("{dir}: no volume {}", mount["name"]))?;
    let secret = &volume["secret"];
    let name = secret["secretName"]
        .as_str()
        .ok_or_else(|| format!("{dir}: volume {} is not a Secret", volume["name"]))?;
    // Without items every key is a file of its own name.
    let key = match secret["items"].as_array() {
        None => Some(file),
        Some(items) => items
            .iter()
            .find(|item| item["path"] == file)
            .and_then(|item| item["key"].as_str()),
    };
    let key = key.ok_or_else(|| format!("{dir}: Secret {name} has no item {file}"))?;
    Ok(Some((name.to_owned(), key.to_owned())))
}

/// An ExactlyOnceConsumer's `spec.redis` credentials and TLS, with the CRD's defaults filled in.
pub fn fleet_redis_access(redis: &Value) -> Value {
    let or = |value: &Value, default: &str| value.as_str().unwrap_or(default).to_owned();
    let credentials = &redis["credentialsSecretRef"];
    let tls = &redis["tls"];
    let ca = &tls["caSecretRef"];
    let client_cert = &tls["clientCertSecretRef"];
    json!({
        "credentials": (!credentials.is_null()).then(|| json!({
            "name": credentials["name"],
            "usernameKey": credentials["usernameKey"],
            "passwordKey": or(&credentials["passwordKey"], "password"),
        })),
        "ca": (!ca.is_null()).then(|| json!({ "name": ca["name"], "key": or(&ca["key"], "ca.crt") })),
        "clientCert": (!client_cert.is_null()).then(|| json!({ "name": client_cert["name"] })),
        "insecureSkipVerify": tls["insecureSkipVerifyForTestsOnly"] == true,
    })
}
