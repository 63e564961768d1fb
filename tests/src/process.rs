//! A child process owned by a test: started with its output in a log file, signalled and
//! killed by its PID, killed on drop, and whose log tail is printed when a test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug)]
pub struct ChildProcess {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out
            .try_clone()
            .expect("a log file handle can be duplicated");
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        ChildProcess {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap_or_else(|e| {
            panic!(
                "sending {signal} to {} (pid {}): {e}",
                self.name,
                self.pid()
            )
        });
    }

    /// Sends SIGTERM and waits for the exit, up to `grace`; returns how it ended.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting on our own child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {grace:?} of SIGTERM\n{}",
                self.name,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Peak resident set size in KiB (`VmHWM` in /proc/PID/status); None once exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time (user + system) the process has used so far; None once exited.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(&self.pid().to_string())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- last {lines} lines of {} ---\n{tail}",
            self.log.display()
        )
    }
}

/// CPU time (user + system) of `/proc/<pid>` (`pid` may be `self`), from fields 14 and 15 of
/// its `stat`, in clock ticks of 1/100 s (`USER_HZ`, which Linux fixes at 100 for user space).
pub fn cpu_time_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // A stopped process ignores SIGKILL until continued on some kernels' accounting; be sure.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(20));
        }
    }
}
