//! The exactly-once operator: turns one `ExactlyOnceConsumer` resource into a running consumer
//! fleet. Pure builders (`deployment`, with `redis_access` for the Redis URL, credentials and
//! TLS Secrets, and `status`) decide; `reconcile` does the I/O around them;
//! `leader`, `http` and `metrics` serve the binary in `main.rs`.

pub mod crd;
pub mod deployment;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod redis_access;
pub mod status;

#[cfg(test)]
mod fixtures;
