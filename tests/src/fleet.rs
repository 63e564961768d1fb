//! A whole pipeline on loopback for one test: a real redis-server, the real `order-service`
//! and real `inventory-consumer` processes, each on free ports, each killed when the test ends.

use std::collections::HashMap;
use std::time::Duration;

use protocol::message::STREAM_FIELD;
use protocol::{DeliveryMode, Keys, env};
use redis::AsyncCommands;

use crate::bins::workspace_binary;
use crate::checker::{Verdict, check};
use crate::load::LoadReport;
use crate::net::{free_port, wait_until};
use crate::process::ChildProcess;
use crate::redis_server::RedisServer;

/// One of our binaries running, with its HTTP base URL.
pub struct Service {
    pub process: ChildProcess,
    pub base_url: String,
}

/// How a service reaches Redis: its URL and the environment that goes with it (credentials,
/// TLS files).
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub url: String,
    pub env: Vec<(&'static str, String)>,
}

impl RedisTarget {
    pub fn url(url: impl Into<String>) -> Self {
        RedisTarget {
            url: url.into(),
            env: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.env.push((name, value.into()));
        self
    }
}

pub struct Fleet {
    pub redis: RedisServer,
    /// How the order service and the consumers started from now on reach Redis; `None`: the
    /// server's own [`RedisServer::url`], nothing else.
    pub order_service_redis: Option<RedisTarget>,
    pub consumer_redis: Option<RedisTarget>,
    pub mode: DeliveryMode,
    pub channel: String,
    pub lock_ttl_ms: u64,
    pub order_service: Option<Service>,
    pub consumers: HashMap<String, Service>,
    /// Extra environment for consumers started from now on (e.g. a small `INTAKE_CAPACITY`).
    pub consumer_env: Vec<(&'static str, String)>,
    logs: tempfile::TempDir,
    http: reqwest::Client,
}

impl Fleet {
    /// Redis only; start the services with [`Fleet::start_order_service`] and
    /// [`Fleet::start_consumer`].
    pub async fn new(mode: DeliveryMode, lock_ttl_ms: u64, aof: bool) -> Self {
        Self::on(RedisServer::start(aof).await, mode, lock_ttl_ms)
    }

    /// A fleet on a server the test started (TLS, ACL users); services not started yet.
    pub fn on(redis: RedisServer, mode: DeliveryMode, lock_ttl_ms: u64) -> Self {
        Fleet {
            redis,
            order_service_redis: None,
            consumer_redis: None,
            mode,
            channel: env::DEFAULT_CHANNEL.to_owned(),
            lock_ttl_ms,
            order_service: None,
            consumers: HashMap::new(),
            consumer_env: Vec::new(),
            logs: tempfile::tempdir().expect("a temporary directory"),
            http: reqwest::Client::new(),
        }
    }

    /// Redis, the order service and `consumers` consumers named c0, c1, ...
    pub async fn start(mode: DeliveryMode, consumers: usize, lock_ttl_ms: u64) -> Self {
        let mut fleet = Fleet::new(mode, lock_ttl_ms, false).await;
        fleet.start_order_service().await;
        for i in 0..consumers {
            fleet.start_consumer(&format!("c{i}"), 0).await;
        }
        fleet
    }

    pub fn keys(&self) -> Keys {
        Keys::new(&self.channel.parse().expect("the test channel is valid"))
    }

    fn common_env(
        &self,
        http_port: u16,
        target: Option<&RedisTarget>,
    ) -> Vec<(&'static str, String)> {
        let url = target.map_or_else(|| self.redis.url(), |t| t.url.clone());
        let mut env = vec![
            (env::REDIS_URL, url),
            (env::CHANNEL, self.channel.clone()),
            (env::DELIVERY_MODE, self.mode.to_string()),
            (env::HTTP_ADDR, format!("127.0.0.1:{http_port}")),
            ("RUST_LOG", "info".to_owned()),
        ];
        env.extend(target.iter().flat_map(|t| t.env.iter().cloned()));
        env
    }

    pub async fn start_order_service(&mut self) {
        self.spawn_order_service();
        let service = self.order_service.as_ref().expect("just started");
        self.wait_ready(service).await;
    }

    /// Starts the order service without waiting for it.
    pub fn spawn_order_service(&mut self) {
        let port = free_port();
        let env = self.common_env(port, self.order_service_redis.as_ref());
        let process = ChildProcess::spawn(
            "order-service",
            &workspace_binary("order-service"),
            &[],
            &env,
            self.logs.path(),
        );
        self.order_service = Some(Service {
            process,
            base_url: format!("http://127.0.0.1:{port}"),
        });
    }

    /// Starts consumer `name`, holding each order `apply_delay_ms` before applying it, and waits
    /// until it reports ready.
    pub async fn start_consumer(&mut self, name: &str, apply_delay_ms: u64) {
        self.spawn_consumer(name, apply_delay_ms);
        let consumer = &self.consumers[name];
        self.wait_ready(consumer).await;
    }

    /// Starts consumer `name` without waiting for it.
    pub fn spawn_consumer(&mut self, name: &str, apply_delay_ms: u64) {
        let port = free_port();
        let mut env = self.common_env(port, self.consumer_redis.as_ref());
        env.extend([
            (env::CONSUMER_NAME, name.to_owned()),
            (env::LOCK_TTL_MS, self.lock_ttl_ms.to_string()),
            ("APPLY_DELAY_MS", apply_delay_ms.to_string()),
        ]);
        env.extend(self.consumer_env.iter().cloned());
        let process = ChildProcess::spawn(
            name,
            &workspace_binary("inventory-consumer"),
            &[],
            &env,
            self.logs.path(),
        );
        self.consumers.insert(
            name.to_owned(),
            Service {
                process,
                base_url: format!("http://127.0.0.1:{port}"),
            },
        );
    }

    pub async fn wait_ready(&self, service: &Service) {
        let url = format!("{}/readyz", service.base_url);
        wait_until(
            &format!("{} to be ready", service.process.name),
            Duration::from_secs(20),
            || async {
                let status = self.http.get(&url).send().await?.status();
                anyhow::ensure!(status.is_success(), "/readyz answered {status}");
                Ok(())
            },
        )
        .await;
    }

    /// The status `/readyz` answers now (an error: no answer at all).
    pub async fn readyz(&self, service: &Service) -> anyhow::Result<u16> {
        let url = format!("{}/readyz", service.base_url);
        Ok(self.http.get(&url).send().await?.status().as_u16())
    }

    pub fn order_service(&mut self) -> &mut Service {
        self.order_service
            .as_mut()
            .expect("the order service was started")
    }

    pub fn order_url(&self) -> String {
        self.order_service
            .as_ref()
            .expect("the order service was started")
            .base_url
            .clone()
    }

    pub fn consumer(&mut self, name: &str) -> &mut Service {
        self.consumers
            .get_mut(name)
            .unwrap_or_else(|| panic!("no consumer {name}"))
    }

    /// Sum of a metric over all its label sets, as one consumer reports it.
    pub async fn metric(&self, consumer: &str, name: &str) -> f64 {
        let url = format!("{}/metrics", self.consumers[consumer].base_url);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let text = text
            .expect("scraping /metrics")
            .text()
            .await
            .expect("reading /metrics");
        sum_metric(&text, name)
    }

    /// Waits until `consumer` has applied at least `n` orders (by its own count).
    pub async fn wait_applied_by(&self, consumer: &str, n: u64) {
        wait_until(
            &format!("{consumer} to apply {n} orders"),
            Duration::from_secs(30),
            || async {
                let applied = self
                    .metric(consumer, "eo_consumer_orders_applied_total")
                    .await;
                anyhow::ensure!(applied >= n as f64, "{consumer} applied {applied}");
                Ok(())
            },
        )
        .await;
    }

    /// Sum of a metric over every consumer still running.
    pub async fn fleet_metric(&mut self, name: &str) -> f64 {
        let mut running = Vec::new();
        for (consumer, service) in self.consumers.iter_mut() {
            if service.process.is_running() {
                running.push(consumer.clone());
            }
        }
        let mut total = 0.0;
        for consumer in running {
            total += self.metric(&consumer, name).await;
        }
        total
    }

    /// The checker's verdict on this fleet's run, once every accepted order is done or `settle`
    /// has passed (see [`crate::checker::SETTLE`]).
    pub async fn verdict(
        &self,
        report: &LoadReport,
        initial: &HashMap<String, i64>,
        settle: Duration,
    ) -> Verdict {
        let mut conn = self.redis.connection().await;
        check(&mut conn, &self.keys(), report, initial, settle).await
    }

    /// No lost, duplicated, unexpected or oversold order. (Every accepted order done and every
    /// done order known is also what bounds applied + rejected by accepted and accepted +
    /// unknown.) Otherwise fails with the verdict and every service's log tail.
    pub fn assert_clean(&self, verdict: &Verdict) {
        assert!(
            verdict.is_clean(),
            "{}\n{}",
            verdict.summary(),
            self.log_tails()
        );
    }

    /// Puts `payload` where the consumers take orders from in this fleet's mode (the channel or
    /// the stream), as the order service would but without its validation: malformed input.
    pub async fn deliver_raw(&self, conn: &mut redis::aio::MultiplexedConnection, payload: &str) {
        match self.mode {
            DeliveryMode::Pubsub => {
                let _: i64 = conn.publish(&self.channel, payload).await.expect("PUBLISH");
            }
            DeliveryMode::Streams => {
                let _: String = conn
                    .xadd(self.keys().stream(), "*", &[(STREAM_FIELD, payload)])
                    .await
                    .expect("XADD");
            }
        }
    }

    /// The order service's record of `order_id` (`GET /orders/{order_id}`).
    pub async fn order_record(&self, order_id: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/orders/{order_id}", self.order_url());
        Ok(self.http.get(url).send().await?.json().await?)
    }

    /// Waits until the order service reports `order_id` with `status` (e.g. `applied`).
    pub async fn wait_order_status(&self, order_id: &str, status: &str) {
        wait_until(
            &format!("order {order_id} to be {status}"),
            Duration::from_secs(30),
            || async {
                let record = self.order_record(order_id).await?;
                anyhow::ensure!(record["status"] == status, "{record}");
                Ok(())
            },
        )
        .await;
    }

    /// Every service's log tail, for a failing assertion's message.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for s in self.order_service.iter().chain(self.consumers.values()) {
            out.push_str(&s.process.log_tail(15));
            out.push('\n');
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Keep every log of a failed test for whoever investigates it.
        if std::thread::panicking() {
            self.logs.disable_cleanup(true);
            eprintln!("logs of this fleet kept in {}", self.logs.path().display());
        }
    }
}

/// Sums the samples of `name` (any labels) in Prometheus text.
pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_a_metric_over_its_labels() {
        let text = "# HELP x\nm_total{reason=\"a\"} 2\nm_total{reason=\"b\"} 3\nm_total_other 9\nm_total 1\n";
        assert_eq!(super::sum_metric(text, "m_total"), 6.0);
    }
}
