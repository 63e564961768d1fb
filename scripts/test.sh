#!/usr/bin/env bash
# The whole test suite, as CI runs it: format and lint, unit tests, the Redis fault suite (real
# redis-server and real processes) and the operator suite (a real Kubernetes control plane built
# from source; the first build took 37 minutes when measured, later runs reuse the cached binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Only the control plane is built from Go source; the local stack needs no Go.
command -v go >/dev/null || { echo "go is required (Go 1.26+) to build the control plane" >&2; exit 1; }
tests/k8s/build.sh >/dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end suites run the workspace's own binaries as separate processes.
cargo build --workspace --bins
cargo test --workspace -- --test-threads 2
