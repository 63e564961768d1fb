//! The operator binary as a child process of the test, pointed at the test cluster through
//! `KUBECONFIG`, logging under the cluster's directory, killed by its PID when dropped.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ControlPlane;
use crate::process::ChildProcess;

/// A running `exactly-once-operator` owned by a test.
pub type OperatorProcess = ChildProcess;

/// Starts `binary ARGS...` with `KUBECONFIG` for `cluster` plus `env`.
pub fn start_operator(
    cluster: &ControlPlane,
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> OperatorProcess {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "process".into());
    let name = format!("{name}-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut vars: Vec<(&str, String)> = vec![(
        "KUBECONFIG",
        cluster.kubeconfig().to_string_lossy().into_owned(),
    )];
    vars.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    ChildProcess::spawn(&name, binary, args, &vars, &cluster.dir().join("logs"))
}
