//! The exactly-once operator: turns one `ExactlyOnceConsumer` resource into a running consumer
//! fleet. Pure builders (`deployment`, `status`) decide; `reconcile` does the I/O around them.

pub mod crd;
pub mod deployment;

#[cfg(test)]
mod fixtures;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod status;
