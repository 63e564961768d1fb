//! The operator binary as a child process of the test, pointed at the test cluster through
//! `KUBECONFIG`, logging to a file, and killed (by its PID) when the handle is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ControlPlane;

/// A running `exactly-once-operator` (or any long-running binary) owned by a test.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts `binary ARGS...` with `KUBECONFIG` for `cluster` plus `env`.
    pub fn start(
        cluster: &ControlPlane,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".into());
        let log = cluster.dir().join("logs").join(format!(
            "{name}-{}.log",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let out = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out
            .try_clone()
            .expect("a log file handle can be duplicated");
        let child = Command::new(binary)
            .args(args)
            .env("KUBECONFIG", cluster.kubeconfig())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a crash or node loss would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown) and wait for the exit.
    pub fn terminate(&mut self) -> std::io::Result<std::process::ExitStatus> {
        if self.is_running() {
            Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status()?;
        }
        self.child.wait()
    }

    /// Peak resident set size in KiB (`VmHWM` in /proc/PID/status); None once exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
