//! Locates the workspace's own binaries. Integration tests of this crate cannot use
//! `CARGO_BIN_EXE_*` for other packages, so the test command builds every binary first
//! (`cargo build --workspace --bins`, with `--release` for benches) and the tests find them beside their own executable.

use std::path::PathBuf;

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
