//! The consumer's environment contract: the operator injects exactly these variables and the
//! consumer reads exactly these, so both sides name them from here.

pub const REDIS_URL: &str = "REDIS_URL";
pub const CHANNEL: &str = "CHANNEL";
pub const LOCK_TTL_MS: &str = "LOCK_TTL_MS";
pub const DELIVERY_MODE: &str = "DELIVERY_MODE";
pub const CONSUMER_NAME: &str = "CONSUMER_NAME";
pub const HTTP_ADDR: &str = "HTTP_ADDR";

/// ACL user and password, for when they live in a Secret's own keys instead of in the URL.
/// They override the URL's user and password.
pub const REDIS_USERNAME: &str = "REDIS_USERNAME";
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";

/// TLS (`rediss://`): a PEM bundle of the CAs that sign the server's certificate (unset: the
/// system roots), and an optional client certificate and key for mutual TLS.
pub const REDIS_TLS_CA_FILE: &str = "REDIS_TLS_CA_FILE";
pub const REDIS_TLS_CERT_FILE: &str = "REDIS_TLS_CERT_FILE";
pub const REDIS_TLS_KEY_FILE: &str = "REDIS_TLS_KEY_FILE";
/// Accepts any server certificate. For tests against throwaway certificates only: the name
/// says so wherever it is set.
pub const REDIS_TLS_INSECURE_SKIP_VERIFY: &str = "REDIS_TLS_INSECURE_SKIP_VERIFY_FOR_TESTS_ONLY";

/// Where the operator mounts the TLS Secrets in a consumer pod (read-only), and the file names
/// inside: `ca.crt` from the CA Secret, `tls.crt` and `tls.key` from a `kubernetes.io/tls`
/// client Secret.
pub const TLS_CA_MOUNT_DIR: &str = "/etc/exactly-once/redis-tls/ca";
pub const TLS_CLIENT_MOUNT_DIR: &str = "/etc/exactly-once/redis-tls/client";
pub const TLS_CA_FILE_NAME: &str = "ca.crt";
pub const TLS_CERT_FILE_NAME: &str = "tls.crt";
pub const TLS_KEY_FILE_NAME: &str = "tls.key";

/// Defaults shared by the consumer's flags and the operator's CRD.
pub const DEFAULT_CHANNEL: &str = "order_updates";
pub const DEFAULT_LOCK_TTL_MS: u64 = 5_000;
/// The consumer's HTTP port (`/healthz`, `/readyz`, `/metrics`).
pub const CONSUMER_HTTP_PORT: u16 = 8080;

/// How long done markers and order records are kept: far beyond any redelivery horizon
/// (lock TTL, reclaim idle time, client retries), so a late duplicate always finds its marker.
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;
