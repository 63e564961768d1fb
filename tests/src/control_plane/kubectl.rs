//! Runs our kubectl (and helm) against the test cluster the way a user would, capturing output.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::ControlPlane;

/// What a kubectl invocation printed and whether it succeeded.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    /// stdout, or a panic that shows the command and what kubectl said.
    #[track_caller]
    pub fn expect_success(self, what: &str) -> String {
        assert!(
            self.success,
            "kubectl {what} failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// stderr of a command that must fail (e.g. an object the API server must reject).
    #[track_caller]
    pub fn expect_failure(self, what: &str) -> String {
        assert!(
            !self.success,
            "kubectl {what} succeeded but should have failed:\nstdout: {}",
            self.stdout
        );
        self.stderr
    }
}

impl ControlPlane {
    /// `kubectl ARGS...` with this cluster's kubeconfig.
    pub async fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        self.kubectl_with_stdin(args, None).await
    }

    /// `kubectl ARGS...` with `stdin` piped in (`kubectl apply -f -`).
    pub async fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        self.run_tool(self.kubectl_path(), args, stdin).await
    }

    /// A client tool (kubectl, helm) with this cluster's kubeconfig, capturing its output.
    pub(super) async fn run_tool(
        &self,
        program: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> KubectlOutput {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            // Discovery cache per cluster, not in ~/.kube (every cluster has new ports).
            .env("KUBECACHEDIR", self.dir().join("kube-cache"))
            // helm keeps its own caches and config: inside the cluster's dir too.
            .env("HELM_CACHE_HOME", self.dir().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir().join("helm/data"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            pipe.write_all(input.as_bytes())
                .await
                .expect("kubectl reads its stdin");
        }
        let output = child
            .wait_with_output()
            .await
            .unwrap_or_else(|e| panic!("{} runs to completion: {e}", program.display()));
        KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
