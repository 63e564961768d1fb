//! A real `redis-server` per test, on a free loopback port, in its own temporary directory.
//! Fails loudly when the binary is missing: these suites never skip.

use std::path::PathBuf;
use std::time::Duration;

use crate::net::{free_port, wait_until};
use crate::process::ChildProcess;

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    process: Option<ChildProcess>,
    restarts: usize,
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
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            aof,
            process: None,
            restarts: 0,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let appendonly = if self.aof { "yes" } else { "no" };
        let args = [
            "--port",
            &port,
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
        ];
        let name = format!("redis-{}-{}", self.port, self.restarts);
        self.process = Some(ChildProcess::spawn(
            &name,
            &binary(),
            &args,
            &[],
            self.dir.path(),
        ));
        let url = self.url();
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || async {
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut conn).await?;
                Ok(())
            },
        )
        .await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The running server process.
    pub fn process(&self) -> &ChildProcess {
        self.process.as_ref().expect("the server is running")
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid URL")
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
}
