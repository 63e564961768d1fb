//! A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) for the operator suites, with one node that is either fake (KWOK, on
//! 127.0.0.1: pods are Ready without running) or real (kubelet, containerd, kube-proxy and
//! CoreDNS in a network namespace of their own: pods run our images).
//! `tests/k8s/control-plane.sh` and `tests/k8s/real-node.sh` own every flag; this module runs
//! them, shares one cluster per test binary, and hands each test its own namespace, a
//! `kube::Client` and our kubectl.

pub mod fleet;
pub mod install;
mod kubectl;
mod namespace;
mod operator;
pub mod port_forward;
pub mod real_node;
mod wait;

pub use kubectl::KubectlOutput;
pub use namespace::TestNamespace;
pub use operator::{OperatorProcess, start_operator};
pub use wait::eventually;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, bail};

const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/build.sh");
const KWOK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/control-plane.sh");
const REAL_NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/real-node.sh");

/// Which node the cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// KWOK marks scheduled pods Running and Ready; nothing runs. Cheap: 200 fleets fit.
    Kwok,
    /// kubelet + containerd + runc: pods run our images, in a network namespace of their own.
    Real,
}

impl Node {
    fn script(self) -> &'static str {
        match self {
            Node::Kwok => KWOK_SCRIPT,
            Node::Real => REAL_NODE_SCRIPT,
        }
    }
}

/// A running cluster. Dropping it stops exactly the processes it started; the shared one
/// lives in a static (never dropped), so the script's watchdog stops it when the test binary
/// exits, whether the tests passed, panicked or the binary was killed.
#[derive(Debug)]
pub struct ControlPlane {
    node: Node,
    dir: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    bin_dir: PathBuf,
}

impl ControlPlane {
    /// Builds the binaries if needed (minutes when cold, progress on stderr), then starts a
    /// cluster with `node` in `dir` and waits until a pod can be scheduled. Blocking.
    pub fn start(node: Node, dir: &Path) -> anyhow::Result<Self> {
        let bin_dir = build_binaries()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let script = node.script();
        let output = Command::new("bash")
            .arg(script)
            .arg("up")
            .arg(dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .env("K8S_BIN_DIR", &bin_dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {script}"))?;
        if !output.status.success() {
            bail!(
                "{script} up {} failed ({}):\n{}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Self {
            node,
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("kubeconfig"),
            kubectl: bin_dir.join("kubectl"),
            bin_dir,
        })
    }

    /// The KWOK cluster shared by every test of this test binary, started on first use.
    /// Panics with the reason when it cannot start: these tests fail, they never skip.
    pub async fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        Self::shared_in(&SHARED, Node::Kwok).await
    }

    /// The real-node cluster shared by every test of this test binary, started on first use,
    /// with this workspace's images imported.
    pub async fn shared_real_node() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        Self::shared_in(&SHARED, Node::Real).await
    }

    async fn shared_in(
        cell: &'static OnceLock<Result<ControlPlane, String>>,
        node: Node,
    ) -> &'static ControlPlane {
        let shared = tokio::task::spawn_blocking(move || {
            cell.get_or_init(|| {
                let dir =
                    std::env::temp_dir().join(format!("exactly-once-k8s-{}", std::process::id()));
                let cluster = ControlPlane::start(node, &dir).map_err(|e| format!("{e:#}"))?;
                if node == Node::Real {
                    cluster.import_images().map_err(|e| format!("{e:#}"))?;
                }
                Ok(cluster)
            })
        })
        .await
        .expect("starting the cluster does not panic");
        match shared {
            Ok(cp) => cp,
            Err(reason) => {
                panic!("the Kubernetes cluster ({node:?} node) could not start: {reason}")
            }
        }
    }

    /// Where build.sh put kubectl, helm and the rest.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A fresh client (kube clients are bound to the tokio runtime that made them, and every
    /// `#[tokio::test]` has its own runtime, so clients are not shared between tests).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .expect("the launcher wrote a valid kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("the launcher's kubeconfig names its cluster, user and certificates");
        kube::Client::try_from(config).expect("a client can be built from the kubeconfig")
    }

    /// The kubeconfig file (admin, system:masters) for child processes via `KUBECONFIG`. With a
    /// real node it reaches the API server through the host's loopback forwarder.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Our kubectl v1.37.2 (not whatever kubectl is on PATH).
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// The directory with certificates, kubeconfig and `logs/<component>.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the processes this control plane started (idempotent).
    pub fn stop(&self) {
        let status = Command::new("bash")
            .arg(self.node.script())
            .arg("down")
            .arg(&self.dir)
            .status();
        if let Err(e) = status {
            eprintln!("stopping the control plane in {}: {e}", self.dir.display());
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `tests/k8s/build.sh` (a no-op when the cache for the pinned go.sum is warm) and
/// returns its bin dir (`K8S_BIN_DIR` when set).
pub fn build_binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("K8S_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let output = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .arg("--print-bin-dir")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {BUILD_SCRIPT}"))?;
    if !output.status.success() {
        bail!(
            "{BUILD_SCRIPT} failed ({}); its output is above",
            output.status
        );
    }
    let dir = String::from_utf8(output.stdout).context("build.sh printed a non-UTF-8 path")?;
    Ok(PathBuf::from(dir.trim()))
}
