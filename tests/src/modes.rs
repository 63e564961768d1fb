//! One scenario, both delivery modes: the suites write a scenario once as
//! `async fn name(mode: DeliveryMode)` and [`both_modes!`](crate::both_modes) makes a test of it
//! per mode, `pubsub::name` and `streams::name`, so either mode can be run or filtered alone.

/// Declares `pubsub::$name` and `streams::$name` tests calling `super::$name(mode)` on a
/// two-worker runtime (the fleet's processes and the test's own waits run side by side). The
/// calling crate needs `tokio` and `protocol`, as every suite of this package has.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod pubsub {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(protocol::DeliveryMode::Pubsub).await })*
        }
        mod streams {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(protocol::DeliveryMode::Streams).await })*
        }
    };
}
