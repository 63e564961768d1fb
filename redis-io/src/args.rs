//! What the order service and the consumers both need to find the fleet's orders: the Redis
//! URL with its credentials and TLS files, the channel (which also names the keys), and the
//! delivery mode, as flags and environment variables, plus the one way both open their Redis
//! connection.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use protocol::env::{self, DEFAULT_CHANNEL};
use protocol::{Channel, DeliveryMode};
use redis::aio::ConnectionManagerConfig;

use crate::client::{self, ClientSpec, Password, RedisConfigError, TlsFiles};
use crate::conn::RedisConn;

#[derive(Clone, Args)]
pub struct RedisArgs {
    /// Redis that records orders and keeps inventory: `redis://[user:password@]host:port[/db]`,
    /// or `rediss://...` for TLS.
    #[arg(long, env = env::REDIS_URL, default_value = "redis://127.0.0.1:6379",
          hide_env_values = true)]
    pub redis_url: String,

    /// ACL user to log in as; overrides a user in the URL.
    #[arg(long, env = env::REDIS_USERNAME)]
    pub redis_username: Option<String>,

    /// Password of the ACL user (or of `default`); overrides a password in the URL.
    #[arg(long, env = env::REDIS_PASSWORD, hide_env_values = true)]
    pub redis_password: Option<Password>,

    /// TLS: PEM bundle of the CAs that sign the server's certificate [default: the system's
    /// trusted roots].
    #[arg(long, env = env::REDIS_TLS_CA_FILE)]
    pub redis_tls_ca_file: Option<PathBuf>,

    /// TLS: PEM client certificate, for servers that require mutual TLS (with --redis-tls-key-file).
    #[arg(long, env = env::REDIS_TLS_CERT_FILE, requires = "redis_tls_key_file")]
    pub redis_tls_cert_file: Option<PathBuf>,

    /// TLS: PEM private key of the client certificate.
    #[arg(long, env = env::REDIS_TLS_KEY_FILE, requires = "redis_tls_cert_file")]
    pub redis_tls_key_file: Option<PathBuf>,

    /// TLS: accept any server certificate. For tests against throwaway certificates only: it
    /// lets anyone on the path read and change every order.
    #[arg(long = "redis-tls-insecure-skip-verify-for-tests-only",
          env = env::REDIS_TLS_INSECURE_SKIP_VERIFY, default_value_t = false)]
    pub redis_tls_insecure_skip_verify: bool,

    /// The channel orders are published on; it also names the fleet's Redis keys.
    #[arg(long, env = env::CHANNEL, default_value = DEFAULT_CHANNEL)]
    pub channel: Channel,

    /// `pubsub` (every consumer hears every order) or `streams` (a consumer group); the order
    /// service and its consumers must agree.
    #[arg(long, env = env::DELIVERY_MODE, default_value = "pubsub")]
    pub delivery_mode: DeliveryMode,
}

/// By hand: the URL may carry a password, so only its endpoint is shown.
impl std::fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisArgs")
            .field("redis_url", &self.endpoint())
            .field("redis_username", &self.redis_username)
            .field("redis_password", &self.redis_password)
            .field("redis_tls_ca_file", &self.redis_tls_ca_file)
            .field("redis_tls_cert_file", &self.redis_tls_cert_file)
            .field("redis_tls_key_file", &self.redis_tls_key_file)
            .field(
                "redis_tls_insecure_skip_verify",
                &self.redis_tls_insecure_skip_verify,
            )
            .field("channel", &self.channel)
            .field("delivery_mode", &self.delivery_mode)
            .finish()
    }
}

impl RedisArgs {
    fn spec(&self) -> ClientSpec<'_> {
        ClientSpec {
            url: &self.redis_url,
            username: self.redis_username.as_deref(),
            password: self.redis_password.as_ref(),
            tls: TlsFiles {
                ca: self.redis_tls_ca_file.as_deref(),
                cert: self.redis_tls_cert_file.as_deref(),
                key: self.redis_tls_key_file.as_deref(),
                insecure_skip_verify: self.redis_tls_insecure_skip_verify,
            },
        }
    }

    /// A client for this Redis, with its credentials and TLS settings; the TLS files are read
    /// now, so a missing or unreadable file stops the process at start with its path.
    pub fn client(&self) -> Result<redis::Client, RedisConfigError> {
        client::build(&self.spec())
    }

    /// Where Redis is and who logs in, for logs and errors: scheme, user, host and port, never
    /// a password.
    pub fn endpoint(&self) -> String {
        client::endpoint(&self.redis_url, self.redis_username.as_deref())
    }

    /// What a connection error most likely means, if it is a common mistake (see
    /// [`client::hint`]); empty otherwise.
    pub fn hint(&self, error: &str) -> &'static str {
        client::hint(&self.redis_url, error).unwrap_or("")
    }

    /// A multiplexed connection for short commands that reconnects by itself, also after a
    /// timeout (see [`RedisConn`]); it connects on first use, so a process can start (not
    /// ready) while Redis is down.
    pub fn connection(&self) -> Result<RedisConn, RedisConfigError> {
        RedisConn::new(self.client()?, connection_config(RESPONSE_TIMEOUT)).map_err(|source| {
            RedisConfigError::Client {
                endpoint: self.endpoint(),
                reason: source.to_string(),
            }
        })
    }
}

/// How long a short command may take before the call counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `response_timeout` must exceed any blocking command sent on the connection.
pub fn connection_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        redis: RedisArgs,
    }

    fn parse(args: &[&str]) -> Result<RedisArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.redis)
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let err = parse(&["--redis-tls-cert-file", "/c.pem"]).err().unwrap();
        assert!(err.to_string().contains("--redis-tls-key-file"), "{err}");
        let args = parse(&[
            "--redis-url",
            "rediss://r:6380",
            "--redis-tls-cert-file",
            "/c.pem",
            "--redis-tls-key-file",
            "/k.pem",
        ])
        .unwrap();
        assert!(args.redis_tls_cert_file.is_some() && args.redis_tls_key_file.is_some());
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let args = parse(&[
            "--redis-url",
            "redis://u:in-url-secret@r:6379",
            "--redis-password",
            "flag-secret",
        ])
        .unwrap();
        let debug = format!("{args:?}");
        assert!(
            !debug.contains("flag-secret") && !debug.contains("in-url-secret"),
            "{debug}"
        );
        assert_eq!(args.endpoint(), "redis://u@r:6379");
    }
}
