//! Locates the workspace's own binaries. Integration tests of this crate cannot use
//! `CARGO_BIN_EXE_*` for other packages, so the test command builds every binary first
//! (`cargo build --workspace --bins`, with `--release` for benches) and the tests find them beside their own executable.

use std::path::PathBuf;
use std::time::Duration;

use protocol::{DeliveryMode, env};

/// Path of a workspace binary (`order-service`, `inventory-consumer`, `exactly-once-operator`).
/// Panics with the command to run when it has not been built: a test must fail loudly.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/<profile>/deps/<test-or-bench> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test and bench binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// What one run of a command printed, and whether it exited 0.
pub struct CommandRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `inventory-consumer <args>` (its `dead-letters` subcommands) against `redis_url` with
/// `redis_env` (credentials, TLS files), `channel` and `mode`, as an operator would: `kubectl
/// exec` into a consumer pod carries the same environment. Panics if it runs past 30 s.
pub async fn consumer_command(
    redis_url: &str,
    redis_env: &[(&'static str, String)],
    channel: &str,
    mode: DeliveryMode,
    args: &[&str],
) -> CommandRun {
    let mut cmd = tokio::process::Command::new(workspace_binary("inventory-consumer"));
    cmd.args(args)
        .env_clear()
        .env(env::REDIS_URL, redis_url)
        .envs(redis_env.iter().map(|(k, v)| (*k, v)))
        .env(env::CHANNEL, channel)
        .env(env::DELIVERY_MODE, mode.as_str())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("inventory-consumer {args:?} did not finish in 30 s"))
        .expect("inventory-consumer runs");
    CommandRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
