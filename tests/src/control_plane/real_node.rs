//! What only a real node can do: run this workspace's images (built as OCI archives from the
//! release binaries and imported into the node's containerd) and crash a container's process
//! the hard way, as the kernel's OOM killer or a segfault would.

use std::process::Command;

use anyhow::{Context, bail};

use super::{ControlPlane, Node, REAL_NODE_SCRIPT};

const BUILD_IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-images.sh");

impl ControlPlane {
    /// Builds the release binaries (a no-op when they are current, so an edit is never tested
    /// through stale images), packs the operator, order service, consumer and Redis images and
    /// imports them into the node. Blocking.
    pub(super) fn import_images(&self) -> anyhow::Result<()> {
        let out = self.dir.join("images");
        run(Command::new("bash")
            .arg(BUILD_IMAGES)
            .arg("--out")
            .arg(&out))
        .context("building and packing the images")?;
        let mut archives: Vec<_> = std::fs::read_dir(&out)
            .with_context(|| format!("reading {}", out.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        archives.sort();
        if archives.is_empty() {
            bail!("{BUILD_IMAGES} wrote no archive into {}", out.display());
        }
        run(Command::new("bash")
            .arg(REAL_NODE_SCRIPT)
            .arg("import")
            .arg(&self.dir)
            .args(&archives))
        .context("importing the images into the node")
    }

    /// SIGKILLs the process of a container (`containerd://<id>`, as a pod's status names it).
    /// kubelet sees it die and restarts it, as after any crash.
    pub fn kill_container(&self, container_id: &str) {
        assert_eq!(self.node, Node::Real, "only a real node runs containers");
        run(Command::new("bash")
            .arg(REAL_NODE_SCRIPT)
            .arg("kill-container")
            .arg(&self.dir)
            .arg(container_id))
        .unwrap_or_else(|e| panic!("killing container {container_id}: {e:#}"));
    }

    /// `helm ARGS...` against this cluster (built by build.sh from the pinned module).
    pub async fn helm(&self, args: &[&str]) -> super::KubectlOutput {
        self.run_tool(&self.bin_dir.join("helm"), args, None).await
    }

    /// The components' log tails, for a failing test's message.
    pub fn logs(&self, lines: usize) -> String {
        let output = Command::new("bash")
            .arg(self.node.script())
            .arg("logs")
            .arg(&self.dir)
            .arg(lines.to_string())
            .output();
        match output {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => format!("(no logs: {e})"),
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
