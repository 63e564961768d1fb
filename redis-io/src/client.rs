//! From configuration to a `redis::Client`: the URL, the ACL credentials that may override it,
//! and the TLS trust (a CA bundle or the system roots, an optional client certificate). Every
//! error names the setting and the rule and shows the endpoint, never a password.

use std::path::Path;

use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};

/// A password from a flag or the environment; `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Password {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Password(s.to_owned()))
    }
}

/// The TLS files and switch, all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub insecure_skip_verify: bool,
}

impl TlsFiles<'_> {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.insecure_skip_verify
    }
}

/// Everything that says how to reach and log in to Redis (no `Debug`: the URL may hold a
/// password).
#[derive(Clone, Copy)]
pub struct ClientSpec<'a> {
    pub url: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a Password>,
    pub tls: TlsFiles<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error(
        "REDIS_URL must be redis://[user:password@]host:port[/db] or rediss://... (TLS), got {endpoint}: {reason}"
    )]
    BadUrl { endpoint: String, reason: String },
    #[error(
        "REDIS_URL {endpoint} asks to skip TLS verification with #insecure: that is only possible with {} (tests only)",
        protocol::env::REDIS_TLS_INSECURE_SKIP_VERIFY
    )]
    InsecureInUrl { endpoint: String },
    #[error("{setting} is set, but REDIS_URL {endpoint} is not a rediss:// (TLS) URL")]
    TlsWithoutRediss {
        setting: &'static str,
        endpoint: String,
    },
    #[error(
        "{setting} conflicts with {}: skipping verification (tests only) takes no CA and no client certificate",
        protocol::env::REDIS_TLS_INSECURE_SKIP_VERIFY
    )]
    VerifyAndSkip { setting: &'static str },
    #[error("{setting} {path}: {source}")]
    ReadFile {
        setting: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("Redis client for {endpoint}: {reason}")]
    Client { endpoint: String, reason: String },
}

/// Scheme, user, host and port of a Redis URL, for logs and errors; `username` (from its own
/// setting) replaces the URL's user. Never a password: a URL that does not parse shows only its
/// scheme.
pub fn endpoint(url: &str, username: Option<&str>) -> String {
    let Some(parsed) = redis::parse_redis_url(url) else {
        return match url.split_once("://") {
            Some((scheme, _)) if scheme.len() <= 10 => format!("{scheme}://<unparsable>"),
            _ => "<unparsable>".to_owned(),
        };
    };
    let user = username
        .filter(|u| !u.is_empty())
        .or(Some(parsed.username()).filter(|u| !u.is_empty()))
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let host = parsed.host_str().unwrap_or("");
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{user}{host}{port}", parsed.scheme())
}

/// Builds the client. The TLS files are read here, once: a rotated certificate takes effect
/// when the process restarts (the operator rolls the pods).
pub fn build(spec: &ClientSpec<'_>) -> Result<redis::Client, RedisConfigError> {
    install_crypto_provider();
    let endpoint = endpoint(spec.url, spec.username);
    let bad_url = |reason: String| RedisConfigError::BadUrl {
        endpoint: endpoint.clone(),
        reason,
    };
    // redis-rs turns a `#insecure` fragment into "accept any certificate"; that must never be
    // one stray character in a URL away.
    if redis::parse_redis_url(spec.url).is_some_and(|u| u.fragment().is_some()) {
        return Err(RedisConfigError::InsecureInUrl { endpoint });
    }
    let mut info = spec
        .url
        .into_connection_info()
        .map_err(|e| bad_url(redact(&e.to_string(), spec)))?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = spec.username.filter(|u| !u.is_empty()) {
        settings = settings.set_username(username);
    }
    if let Some(password) = spec.password.filter(|p| !p.expose().is_empty()) {
        settings = settings.set_password(password.expose());
    }
    info = info.set_redis_settings(settings);

    let tls = spec.tls;
    let ConnectionAddr::TcpTls { host, port, .. } = info.addr().clone() else {
        if tls.any() {
            let setting = [
                (tls.ca.is_some(), protocol::env::REDIS_TLS_CA_FILE),
                (tls.cert.is_some(), protocol::env::REDIS_TLS_CERT_FILE),
                (tls.key.is_some(), protocol::env::REDIS_TLS_KEY_FILE),
            ]
            .into_iter()
            .find_map(|(set, name)| set.then_some(name))
            .unwrap_or(protocol::env::REDIS_TLS_INSECURE_SKIP_VERIFY);
            return Err(RedisConfigError::TlsWithoutRediss { setting, endpoint });
        }
        return redis::Client::open(info).map_err(|e| bad_url(e.to_string()));
    };
    if tls.insecure_skip_verify {
        if let Some(setting) = tls
            .ca
            .map(|_| protocol::env::REDIS_TLS_CA_FILE)
            .or(tls.cert.map(|_| protocol::env::REDIS_TLS_CERT_FILE))
        {
            return Err(RedisConfigError::VerifyAndSkip { setting });
        }
        let info = info.set_addr(ConnectionAddr::TcpTls {
            host,
            port,
            insecure: true,
            tls_params: None,
        });
        return redis::Client::open(info).map_err(|e| bad_url(e.to_string()));
    }
    let read = |setting: &'static str, path: Option<&Path>| {
        path.map(|path| {
            std::fs::read(path).map_err(|source| RedisConfigError::ReadFile {
                setting,
                path: path.display().to_string(),
                source,
            })
        })
        .transpose()
    };
    let root_cert = read(protocol::env::REDIS_TLS_CA_FILE, tls.ca)?;
    let cert = read(protocol::env::REDIS_TLS_CERT_FILE, tls.cert)?;
    let key = read(protocol::env::REDIS_TLS_KEY_FILE, tls.key)?;
    let client_tls = match (cert, key) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(RedisConfigError::Client {
                endpoint,
                reason: format!(
                    "{} and {} go together: set both for mutual TLS, or neither",
                    protocol::env::REDIS_TLS_CERT_FILE,
                    protocol::env::REDIS_TLS_KEY_FILE
                ),
            });
        }
    };
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| RedisConfigError::Client {
        endpoint,
        reason: e.to_string(),
    })
}

/// What a connection error most likely means, for the log line beside it: TLS failures and
/// a scheme that does not match the port are common first-day mistakes with managed Redis, and
/// the library's wording ("connection reset", "UnknownIssuer") does not say what to change.
pub fn hint(url: &str, error: &str) -> Option<&'static str> {
    let tls = url.starts_with("rediss://");
    let error = error.to_ascii_lowercase();
    let has = |s: &str| error.contains(s);
    Some(if has("unknownissuer") || has("badsignature") {
        "the server's certificate is not signed by a CA in REDIS_TLS_CA_FILE (or, without it, the system roots)"
    } else if has("expired") || has("notvalidyet") {
        "the server's certificate is expired or not valid yet"
    } else if has("notvalidforname") || has("certnotvalidforname") {
        "the server's certificate does not name the host in REDIS_URL"
    } else if tls
        && (has("corrupt message") || has("invalidcontenttype") || has("received corrupt"))
    {
        "the port does not speak TLS: use redis:// or the server's TLS port"
    } else if !tls && (has("reset by peer") || has("connection closed") || has("broken pipe")) {
        "the server closed the connection at once: if this is a TLS port, use rediss://"
    } else if has("wrongpass")
        || has("noauth")
        || has("invalid username-password")
        || has("authentication failed")
    {
        "wrong user or password: check REDIS_USERNAME/REDIS_PASSWORD or the URL's credentials"
    } else if has("noperm") {
        "the ACL user lacks a permission: see the README's ACL rules"
    } else {
        return None;
    })
}

/// rustls needs one process-wide crypto provider; ring is the one this workspace builds. Safe
/// to call any number of times (a provider already installed stays).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Removes the password from a message that might quote the URL.
fn redact(message: &str, spec: &ClientSpec<'_>) -> String {
    let mut message = message.replace(spec.url, &endpoint(spec.url, None));
    if let Some(password) = spec.password.filter(|p| !p.expose().is_empty()) {
        message = message.replace(password.expose(), "<redacted>");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> ClientSpec<'_> {
        ClientSpec {
            url,
            username: None,
            password: None,
            tls: TlsFiles::default(),
        }
    }

    #[test]
    fn endpoints_never_carry_credentials() {
        assert_eq!(
            endpoint("redis://user:s3cret@cache.example:6380/2", None),
            "redis://user@cache.example:6380"
        );
        assert_eq!(
            endpoint("redis://user:s3cret@cache.example:6380", Some("acl-user")),
            "redis://acl-user@cache.example:6380"
        );
        assert_eq!(endpoint("rediss://:s3cret@r", None), "rediss://r");
        assert_eq!(endpoint("redis//:s3cret@r", None), "<unparsable>");
        assert!(!endpoint("redis://:s3cret@[::1", None).contains("s3cret"));
    }

    #[test]
    fn credentials_from_settings_override_the_url() {
        let password: Password = "from-env".parse().unwrap();
        let client = build(&ClientSpec {
            username: Some("eo-consumer"),
            password: Some(&password),
            ..spec("redis://old:old@r:6379")
        })
        .unwrap();
        let settings = client.get_connection_info().redis_settings();
        assert_eq!(settings.username(), Some("eo-consumer"));
        assert_eq!(settings.password(), Some("from-env"));
        // And the URL's own credentials when none are set.
        let client = build(&spec("redis://u:p@r:6379")).unwrap();
        let settings = client.get_connection_info().redis_settings();
        assert_eq!(
            (settings.username(), settings.password()),
            (Some("u"), Some("p"))
        );
    }

    #[test]
    fn tls_settings_need_a_rediss_url() {
        let ca = Path::new("/ca.pem");
        let err = build(&ClientSpec {
            tls: TlsFiles {
                ca: Some(ca),
                ..TlsFiles::default()
            },
            ..spec("redis://:pw@r:6379")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("REDIS_TLS_CA_FILE")
                && err.contains("redis://r:6379")
                && !err.contains("pw"),
            "{err}"
        );
    }

    #[test]
    fn skipping_verification_is_never_one_fragment_away() {
        let err = build(&spec("rediss://:pw@r:6380/#insecure"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REDIS_TLS_INSECURE_SKIP_VERIFY_FOR_TESTS_ONLY"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
        let insecure = build(&ClientSpec {
            tls: TlsFiles {
                insecure_skip_verify: true,
                ..TlsFiles::default()
            },
            ..spec("rediss://r:6380")
        })
        .unwrap();
        assert!(matches!(
            insecure.get_connection_info().addr(),
            ConnectionAddr::TcpTls { insecure: true, .. }
        ));
        let err = build(&ClientSpec {
            tls: TlsFiles {
                ca: Some(Path::new("/ca.pem")),
                insecure_skip_verify: true,
                ..TlsFiles::default()
            },
            ..spec("rediss://r:6380")
        })
        .unwrap_err();
        assert!(
            matches!(err, RedisConfigError::VerifyAndSkip { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_missing_ca_file_names_the_setting_and_the_path() {
        let err = build(&ClientSpec {
            tls: TlsFiles {
                ca: Some(Path::new("/nonexistent/ca.pem")),
                ..TlsFiles::default()
            },
            ..spec("rediss://r:6380")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("REDIS_TLS_CA_FILE") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn hints_say_what_to_change() {
        let tls = "rediss://r:6380";
        assert!(
            hint(tls, "invalid peer certificate: UnknownIssuer")
                .unwrap()
                .contains("REDIS_TLS_CA_FILE")
        );
        assert!(
            hint(tls, "invalid peer certificate: Expired")
                .unwrap()
                .contains("expired")
        );
        assert!(
            hint("redis://r:6380", "Connection reset by peer (os error 104)")
                .unwrap()
                .contains("rediss://")
        );
        assert!(
            hint(tls, "received corrupt message of type InvalidContentType")
                .unwrap()
                .contains("does not speak TLS")
        );
        assert!(
            hint(tls, "WRONGPASS: invalid username-password pair")
                .unwrap()
                .contains("password")
        );
        // How redis-rs words a refused AUTH.
        assert!(
            hint(tls, "Password authentication failed - AuthenticationFailed")
                .unwrap()
                .contains("password")
        );
        assert_eq!(hint(tls, "Connection refused (os error 111)"), None);
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = build(&spec("http://:pw@r:6379")).unwrap_err().to_string();
        assert!(
            err.contains("REDIS_URL must be") && !err.contains("pw"),
            "{err}"
        );
    }
}
