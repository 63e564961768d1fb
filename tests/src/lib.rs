//! Test harness: launchers for the real components the end-to-end suites run against
//! (redis-server, the project's own binaries, a Kubernetes control plane).

pub mod accept;
pub mod bins;
pub mod checker;
pub mod control_plane;
pub mod fleet;
pub mod load;
pub mod manifests;
pub mod modes;
pub mod net;
pub mod process;
pub mod redis_server;
pub mod stall_proxy;
pub mod stream_group;
pub mod tls;
