//! `kubectl port-forward` as a user runs it: a local port on the host's 127.0.0.1 tunnelled
//! through the API server and the kubelet to a pod, so the host never dials a pod or service
//! address. kubectl binds one pod when it starts and stops serving when that pod goes away, so
//! a test opens a new forward after replacing the pod behind it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::anyhow;

use super::ControlPlane;
use crate::net::{free_port, wait_until};

#[derive(Debug)]
pub struct PortForward {
    local_port: u16,
    child: Child,
    log: std::path::PathBuf,
}

impl PortForward {
    /// `kubectl port-forward -n NAMESPACE TARGET LOCAL:REMOTE_PORT` (TARGET like
    /// `svc/order-service`), once the local port accepts connections.
    pub async fn open(
        cluster: &ControlPlane,
        namespace: &str,
        target: &str,
        remote_port: u16,
    ) -> Self {
        let local_port = free_port();
        let log = cluster
            .dir()
            .join("logs")
            .join(format!("port-forward-{namespace}-{}.log", local_port));
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = Command::new(cluster.kubectl_path())
            .args(["port-forward", "-n", namespace, target])
            .arg(format!("{local_port}:{remote_port}"))
            .arg("--address=127.0.0.1")
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("KUBECACHEDIR", cluster.dir().join("kube-cache"))
            .stdin(Stdio::null())
            .stdout(
                out.try_clone()
                    .expect("a log file handle can be duplicated"),
            )
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting kubectl port-forward: {e}"));
        let mut forward = PortForward {
            local_port,
            child,
            log: log.clone(),
        };
        let what = format!("port-forward {namespace}/{target} on 127.0.0.1:{local_port}");
        wait_until(&what, Duration::from_secs(60), || {
            let exited = forward.child.try_wait().ok().flatten();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            async move {
                if let Some(status) = exited {
                    return Err(anyhow!("kubectl exited ({status}): {log}"));
                }
                TcpStream::connect(("127.0.0.1", local_port))?;
                Ok(())
            }
        })
        .await;
        forward
    }

    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// `http://127.0.0.1:<local port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.local_port)
    }

    /// Whether kubectl still forwards (it exits when its pod is gone).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What kubectl printed, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
