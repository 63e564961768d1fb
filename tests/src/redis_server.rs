//! A real `redis-server` per test, on a free loopback port, in its own temporary directory,
//! plain by default or TLS (optionally mutual) with the test's own certificates.
//! Fails loudly when the binary is missing: these suites never skip.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use protocol::redis_version::Version;
use redis::{ClientTlsConfig, TlsCertificates};

use crate::net::{free_port, wait_until};
use crate::process::ChildProcess;
use crate::tls::CertFiles;

pub struct RedisServer {
    /// The port [`RedisServer::url`] names: the TLS port when TLS is on.
    pub port: u16,
    /// A plain port beside the TLS one, when the TLS listener asked for it.
    pub plain_port: Option<u16>,
    tls: Option<TlsListener>,
    dir: tempfile::TempDir,
    aof: bool,
    process: Option<ChildProcess>,
    restarts: usize,
}

/// A TLS listener: the certificate the server presents, the CA it checks client certificates
/// against, and whether it requires one.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub server: CertFiles,
    pub ca: PathBuf,
    /// `Some`: `--tls-auth-clients yes`, and the harness presents this certificate.
    pub client: Option<CertFiles>,
    /// Also listen on a plain port (otherwise `--port 0`: TLS only).
    pub plain_port: bool,
}

fn binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.expect("redis-server is not installed: run `apt-get install -y redis-server` (the README's test command does)")
}

impl RedisServer {
    /// Starts a server; with `aof`, every write is appended and fsynced (`appendfsync always`),
    /// as a restart test needs.
    pub async fn start(aof: bool) -> Self {
        Self::start_with(aof, None).await
    }

    /// Starts a server without persistence listening with `tls`.
    pub async fn start_tls(tls: TlsListener) -> Self {
        Self::start_with(false, Some(tls)).await
    }

    async fn start_with(aof: bool, tls: Option<TlsListener>) -> Self {
        let plain_port = tls.as_ref().is_some_and(|t| t.plain_port).then(free_port);
        let mut server = RedisServer {
            port: free_port(),
            plain_port,
            tls,
            dir: tempfile::tempdir().expect("a temporary directory"),
            aof,
            process: None,
            restarts: 0,
        };
        server.launch().await;
        server
    }

    /// The listener options: `--port` alone, or the TLS ones with a plain port or `--port 0`.
    fn listen_args(&self) -> Vec<String> {
        let Some(tls) = &self.tls else {
            return vec!["--port".into(), self.port.to_string()];
        };
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let auth_clients = if tls.client.is_some() { "yes" } else { "no" };
        vec![
            "--port".into(),
            self.plain_port.unwrap_or(0).to_string(),
            "--tls-port".into(),
            self.port.to_string(),
            "--tls-cert-file".into(),
            path(&tls.server.cert),
            "--tls-key-file".into(),
            path(&tls.server.key),
            "--tls-ca-cert-file".into(),
            path(&tls.ca),
            "--tls-auth-clients".into(),
            auth_clients.into(),
        ]
    }

    async fn launch(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let appendonly = if self.aof { "yes" } else { "no" };
        let listen = self.listen_args();
        let mut args: Vec<&str> = listen.iter().map(String::as_str).collect();
        args.extend([
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir,
            "--save",
            "",
            "--appendonly",
            appendonly,
            "--appendfsync",
            "always",
            "--maxmemory-policy",
            "noeviction",
        ]);
        let name = format!("redis-{}-{}", self.port, self.restarts);
        self.process = Some(ChildProcess::spawn(
            &name,
            &binary(),
            &args,
            &[],
            self.dir.path(),
        ));
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || async {
                let mut conn = self.client().get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut conn).await?;
                Ok(())
            },
        )
        .await;
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` on the TLS port.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The plain port's URL of a TLS server that has one.
    pub fn plain_url(&self) -> String {
        let port = self
            .plain_port
            .expect("this server was started with a plain port beside TLS");
        format!("redis://127.0.0.1:{port}")
    }

    /// The harness's own client, as the default user. Over TLS it skips verifying the server:
    /// it must reach the server whatever certificate a test gave it (an expired one too); what
    /// the tests check is how our services verify.
    pub fn client(&self) -> redis::Client {
        let Some(tls) = &self.tls else {
            return redis::Client::open(self.url()).expect("a valid URL");
        };
        let read = |p: &PathBuf| {
            std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        };
        let client_tls = tls.client.as_ref().map(|c| ClientTlsConfig {
            client_cert: read(&c.cert),
            client_key: read(&c.key),
        });
        redis::Client::build_with_tls(
            format!("{}/#insecure", self.url()),
            TlsCertificates {
                client_tls,
                root_cert: None,
            },
        )
        .expect("a valid TLS client configuration")
    }

    /// The running server process.
    pub fn process(&self) -> &ChildProcess {
        self.process.as_ref().expect("the server is running")
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the test's redis-server")
    }

    /// Stops the server with SHUTDOWN (the AOF is complete) and starts it again on the same
    /// port and directory.
    pub async fn restart(&mut self) {
        let mut conn = self.connection().await;
        let _ = redis::cmd("SHUTDOWN").query_async::<()>(&mut conn).await;
        if let Some(mut old) = self.process.take() {
            old.terminate(Duration::from_secs(10));
        }
        self.restarts += 1;
        self.launch().await;
    }

    /// Kills every client connection of `kind` (`normal` or `pubsub`); returns how many.
    pub async fn kill_clients(&self, kind: &str) -> i64 {
        let mut conn = self.connection().await;
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut conn)
            .await
            .expect("CLIENT KILL")
    }

    /// Creates (or amends) an ACL user: `args` are what follows `ACL SETUSER`, as
    /// `protocol::acl::setuser_args` gives them. Users live until the server restarts.
    pub async fn create_user(&self, args: &[String]) {
        let mut conn = self.connection().await;
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(args)
            .query_async::<()>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("ACL SETUSER {}: {e}", args[0]));
    }

    /// The server's version, from `INFO server`.
    pub async fn version(&self) -> Version {
        let mut conn = self.connection().await;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .expect("INFO server");
        protocol::redis_version::parse_info(&info)
            .unwrap_or_else(|e| panic!("{e}: {info}"))
            .redis_version
    }

    /// Every `ACL LOG` entry (refused commands, keys, channels and logins), one line each:
    /// `reason=command context=lua object=flushall username=eo-consumer count=1`.
    pub async fn acl_log(&self) -> Vec<String> {
        let mut conn = self.connection().await;
        let entries: Vec<HashMap<String, redis::Value>> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut conn)
            .await
            .expect("ACL LOG");
        entries
            .iter()
            .map(|entry| {
                ["reason", "context", "object", "username", "count"]
                    .iter()
                    .map(|field| {
                        let value = entry
                            .get(*field)
                            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
                        format!("{field}={}", value.unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}
