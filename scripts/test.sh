#!/usr/bin/env bash
# The whole test suite, as CI runs it: format and lint, unit tests, the image writer's tests,
# the Redis fault suite (real redis-server and real processes), the operator suites (a real
# Kubernetes control plane built from source, cached outside the clone after the first build)
# and the real-node suite (kubelet, containerd and this workspace's images; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
# Checked first, not after the builds: the real node needs network namespaces, mounts and cgroups.
[ "$(id -u)" -eq 0 ] || { echo "scripts/test.sh runs a real Kubernetes node: run it as root" >&2; exit 1; }

scripts/install-deps.sh
command -v go >/dev/null || { echo "go is required (Go 1.26+) to build the cluster's binaries" >&2; exit 1; }
tests/k8s/build.sh >/dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
python3 scripts/oci_image_test.py
# The end-to-end suites run the workspace's own binaries as separate processes; the real-node
# suite runs the images made from the release binaries, as users get them.
cargo build --workspace --bins
# The same package selection as the Dockerfile and scripts/build-images.sh (features unify per
# selection; another would compile the dependencies a second time).
cargo build --release -p operator -p order -p consumer --bins
cargo test --workspace -- --test-threads 2
