//! Redis over TLS, as managed Redis serves it: the fault suite's bulk scenario over `rediss://`
//! (and mutual TLS), and the ways a deployment gets TLS wrong (a CA that did not sign the
//! server, an expired server certificate, a plain URL against the TLS port). A misconfigured
//! process stays up and not ready, says which host and port it cannot reach without printing
//! the password, retries at the backoff's pace, and loses nothing once the fleet is fixed.

use std::collections::HashMap;
use std::time::Duration;

use e2e::checker::SETTLE;
use e2e::fleet::{Fleet, RedisTarget, Service};
use e2e::load::{orders, place_orders};
use e2e::net::wait_until;
use e2e::redis_server::{RedisServer, TlsListener};
use e2e::tls::{CertFiles, TestPki};
use protocol::{DeliveryMode, env};

const ITEMS: [&str; 5] = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"];
const LOCK_TTL_MS: u64 = 1_000;
/// The user the services log in as, with a password in every URL they get, so a log that
/// prints it is caught. (Redis refuses `AUTH` for a default user without a password.)
const USER: &str = "tls-test";
const PASSWORD: &str = "tls-test-Pa55word-7f3a";

/// A TLS-only server with [`USER`] allowed everything.
async fn tls_server(listener: TlsListener) -> RedisServer {
    let redis = RedisServer::start_tls(listener).await;
    let user = [USER, "on", &format!(">{PASSWORD}"), "~*", "&*", "+@all"];
    redis.create_user(&user.map(str::to_owned)).await;
    redis
}

fn url(scheme: &str, redis: &RedisServer) -> String {
    format!("{scheme}://{USER}:{PASSWORD}@127.0.0.1:{}", redis.port)
}

fn listener(pki: &TestPki, server: &CertFiles, mutual: bool) -> TlsListener {
    TlsListener {
        server: server.clone(),
        ca: pki.ca.clone(),
        client: mutual.then(|| pki.client.clone()),
        plain_port: false,
    }
}

/// `rediss://` with the password, trusting `ca`, presenting the client certificate if `mutual`.
fn tls_target(
    redis: &RedisServer,
    ca: &std::path::Path,
    pki: &TestPki,
    mutual: bool,
) -> RedisTarget {
    let target =
        RedisTarget::url(url("rediss", redis)).with(env::REDIS_TLS_CA_FILE, ca.to_string_lossy());
    if mutual {
        target
            .with(env::REDIS_TLS_CERT_FILE, pki.client.cert.to_string_lossy())
            .with(env::REDIS_TLS_KEY_FILE, pki.client.key.to_string_lossy())
    } else {
        target
    }
}

// --- The certificates themselves, through redis-rs as our services use it ---

/// A client that verifies the server against `ca`, presenting `client` if given.
async fn verified_ping(
    redis: &RedisServer,
    ca: &std::path::Path,
    client: Option<&CertFiles>,
) -> redis::RedisResult<()> {
    let client_tls = client.map(|c| redis::ClientTlsConfig {
        client_cert: std::fs::read(&c.cert).unwrap(),
        client_key: std::fs::read(&c.key).unwrap(),
    });
    let client = redis::Client::build_with_tls(
        redis.url(),
        redis::TlsCertificates {
            client_tls,
            root_cert: Some(std::fs::read(ca).unwrap()),
        },
    )?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut conn).await
}

#[tokio::test]
async fn the_test_pki_verifies_and_each_bad_certificate_is_refused() {
    let pki = TestPki::generate();
    let good = RedisServer::start_tls(listener(&pki, &pki.server, false)).await;
    verified_ping(&good, &pki.ca, None)
        .await
        .expect("the server certificate verifies against the test CA for 127.0.0.1");
    assert!(
        verified_ping(&good, &pki.wrong_ca, None).await.is_err(),
        "a CA that signed nothing was trusted"
    );
    let expired = RedisServer::start_tls(listener(&pki, &pki.expired_server, false)).await;
    let e = verified_ping(&expired, &pki.ca, None).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");

    let mutual = RedisServer::start_tls(listener(&pki, &pki.server, true)).await;
    verified_ping(&mutual, &pki.ca, Some(&pki.client))
        .await
        .expect("the client certificate is accepted");
    assert!(
        verified_ping(&mutual, &pki.ca, None).await.is_err(),
        "mutual TLS let in a client without a certificate"
    );
}

// --- The fleet over TLS ---

e2e::both_modes!(three_consumers_ten_thousand_orders_over_tls);

/// The fault suite's bulk scenario over `rediss://`; streams with mutual TLS, pubsub without.
async fn three_consumers_ten_thousand_orders_over_tls(mode: DeliveryMode) {
    let mutual = mode == DeliveryMode::Streams;
    let pki = TestPki::generate();
    let redis = tls_server(listener(&pki, &pki.server, mutual)).await;
    let target = tls_target(&redis, &pki.ca, &pki, mutual);
    let mut fleet = Fleet::on(redis, mode, LOCK_TTL_MS);
    fleet.order_service_redis = Some(target.clone());
    fleet.consumer_redis = Some(target);
    fleet.start_order_service().await;
    for name in ["c0", "c1", "c2"] {
        fleet.start_consumer(name, 0).await;
    }
    let initial = e2e::load::stock(&fleet.order_url(), &ITEMS, 1_000_000).await;
    let report = place_orders(
        &fleet.order_url(),
        orders("tls", 10_000, &ITEMS),
        32,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(report.accepted.len(), 10_000);
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert_eq!(v.applied, 10_000, "{}", v.summary());
}

// --- Misconfigured TLS ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_the_server_keeps_the_fleet_unready_until_fixed() {
    let pki = TestPki::generate();
    let redis = tls_server(listener(&pki, &pki.server, false)).await;
    let bad = tls_target(&redis, &pki.wrong_ca, &pki, false);
    let good = tls_target(&redis, &pki.ca, &pki, false);
    misconfigured_then_fixed(redis, DeliveryMode::Pubsub, bad, good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_keeps_the_fleet_unready_until_fixed() {
    let pki = TestPki::generate();
    let redis = tls_server(listener(&pki, &pki.expired_server, false)).await;
    let bad = tls_target(&redis, &pki.ca, &pki, false);
    // The fix here is on the client side alone, as an operator in a hurry would do it (a CA
    // and skipping verification together are refused).
    let good =
        RedisTarget::url(url("rediss", &redis)).with(env::REDIS_TLS_INSECURE_SKIP_VERIFY, "true");
    misconfigured_then_fixed(redis, DeliveryMode::Streams, bad, good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_url_against_the_tls_port_keeps_the_fleet_unready_until_fixed() {
    let pki = TestPki::generate();
    let redis = tls_server(listener(&pki, &pki.server, false)).await;
    let bad = RedisTarget::url(url("redis", &redis));
    let good = tls_target(&redis, &pki.ca, &pki, false);
    misconfigured_then_fixed(redis, DeliveryMode::Pubsub, bad, good).await;
}

/// How long the misconfigured processes are watched: longer than the backoff's longest wait
/// (5 s), so a consumer still retrying reconnects at least once in it, and long enough for a
/// retry loop without backoff to reconnect hundreds of times.
const WATCH: Duration = Duration::from_secs(6);
/// Reconnects allowed over `WATCH`: from the first failure on, the backoff's 100, 200, 400,
/// 800, 1,600 and 3,200 ms make five in any 6 s.
const MAX_RECONNECTS: f64 = 8.0;

/// Starts the order service and two consumers with `bad`; checks that each stays up, not ready,
/// names the host and port in its log without the password, and retries no faster than the
/// backoff. Then a correctly configured order service accepts orders while the misconfigured
/// consumers still run, a correctly configured consumer joins, and every order is applied once.
async fn misconfigured_then_fixed(
    redis: RedisServer,
    mode: DeliveryMode,
    bad: RedisTarget,
    good: RedisTarget,
) {
    let host_port = format!("127.0.0.1:{}", redis.port);
    let mut fleet = Fleet::on(redis, mode, LOCK_TTL_MS);
    fleet.order_service_redis = Some(bad.clone());
    fleet.consumer_redis = Some(bad);
    fleet.spawn_order_service();
    for name in ["bad0", "bad1"] {
        fleet.spawn_consumer(name, 0);
    }

    // Each says which Redis it cannot reach, once it has tried: the failure line itself (the
    // startup line already names the endpoint).
    for name in ["order-service", "bad0", "bad1"] {
        let service = service(&fleet, name);
        wait_until(
            &format!("{name} to log that it cannot reach {host_port}"),
            Duration::from_secs(20),
            || async {
                let failed = service.process.log().lines().any(|line| {
                    line.contains(&host_port)
                        && (line.contains("Redis unavailable") || line.contains(" lost"))
                });
                anyhow::ensure!(failed, "not yet: {}", service.process.log_tail(5));
                Ok(())
            },
        )
        .await;
    }
    // Each consumer keeps retrying (the backoff's first waits are 100 and 200 ms)...
    wait_until(
        "the misconfigured consumers to retry",
        Duration::from_secs(20),
        || async {
            let counts = reconnects(&fleet).await;
            anyhow::ensure!(counts.values().all(|&n| n >= 2.0), "{counts:?}");
            Ok(())
        },
    )
    .await;
    // ...and no faster than the backoff.
    let reconnects_before = reconnects(&fleet).await;
    // An observation window, not a wait for a condition: what is measured is a rate.
    tokio::time::sleep(WATCH).await;
    let reconnects_after = reconnects(&fleet).await;

    for name in ["order-service", "bad0", "bad1"] {
        let service = service(&fleet, name);
        let status = fleet.readyz(service).await.unwrap_or_else(|e| {
            panic!(
                "{name} does not answer /readyz: {e}\n{}",
                service.process.log_tail(20)
            )
        });
        assert_eq!(status, 503, "{name} is ready without Redis");
        let log = service.process.log();
        assert!(
            !log.contains(PASSWORD),
            "{name} printed the password:\n{log}"
        );
    }
    for (name, after) in &reconnects_after {
        let n = after - reconnects_before[name];
        assert!(
            n >= 1.0,
            "{name} reconnected {n} times in {WATCH:?}: it gave up retrying"
        );
        assert!(
            n <= MAX_RECONNECTS,
            "{name} reconnected {n} times in {WATCH:?}: faster than the backoff"
        );
    }
    assert!(fleet.order_service().process.is_running());
    for name in ["bad0", "bad1"] {
        assert!(fleet.consumer(name).process.is_running(), "{name} exited");
    }

    // Fixed: a correctly configured order service takes orders while only the misconfigured
    // consumers run, then a correctly configured consumer joins.
    fleet.order_service().process.kill();
    fleet.order_service_redis = Some(good.clone());
    fleet.consumer_redis = Some(good);
    fleet.start_order_service().await;
    let initial = e2e::load::stock(&fleet.order_url(), &ITEMS, 1_000_000).await;
    let report = place_orders(
        &fleet.order_url(),
        orders("fixed", 300, &ITEMS),
        16,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(report.accepted.len(), 300);
    fleet.start_consumer("good", 0).await;
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert_eq!(v.applied, 300, "{}", v.summary());
}

fn service<'a>(fleet: &'a Fleet, name: &str) -> &'a Service {
    match name {
        "order-service" => fleet.order_service.as_ref().expect("started"),
        consumer => &fleet.consumers[consumer],
    }
}

/// Each misconfigured consumer's reconnect count now.
async fn reconnects(fleet: &Fleet) -> HashMap<&'static str, f64> {
    let mut counts = HashMap::new();
    for name in ["bad0", "bad1"] {
        counts.insert(
            name,
            fleet.metric(name, "eo_consumer_reconnects_total").await,
        );
    }
    counts
}
