//! Test harness: launchers for the real components the end-to-end suites run against
//! (redis-server, the project's own binaries, a Kubernetes control plane).

pub mod bins;
pub mod control_plane;
