//! The fleet under the least-privilege ACL users of `protocol::acl`, as a managed Redis would
//! run it: every order applied exactly once with nothing refused along the way (`ACL LOG`
//! empty, recovery paths included), commands outside the rules refused with `NOPERM`, and a
//! wrong password reported by host and user, never by password.

use std::collections::HashMap;
use std::time::Duration;

use e2e::bins::consumer_command;
use e2e::checker::SETTLE;
use e2e::fleet::{Fleet, RedisTarget, Service};
use e2e::load::{orders, place_orders};
use e2e::net::wait_until;
use e2e::redis_server::RedisServer;
use nix::sys::signal::Signal;
use protocol::acl::{self, DEFAULT_CONSUMER_USER, DEFAULT_ORDER_SERVICE_USER, Role};
use protocol::{Channel, DeliveryMode, env};

const ITEMS: [&str; 5] = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"];
const LOCK_TTL_MS: u64 = 1_000;
const CONSUMER_PASSWORD: &str = "consumer-Pa55-acl-91c2";
const ORDER_SERVICE_PASSWORD: &str = "order-Pa55-acl-4e7b";

fn channel() -> Channel {
    env::DEFAULT_CHANNEL
        .parse()
        .expect("the default channel is valid")
}

/// A plain server with the two users of `protocol::acl` on the default channel.
async fn redis_with_users() -> RedisServer {
    let redis = RedisServer::start(false).await;
    let version = redis.version().await;
    for (role, user, password) in [
        (Role::Consumer, DEFAULT_CONSUMER_USER, CONSUMER_PASSWORD),
        (
            Role::OrderService,
            DEFAULT_ORDER_SERVICE_USER,
            ORDER_SERVICE_PASSWORD,
        ),
    ] {
        let args = acl::setuser_args(role, user, password, &channel(), version);
        redis.create_user(&args).await;
    }
    redis
}

/// Credentials in the URL (`redis://user:password@host:port`).
fn in_url(redis: &RedisServer, user: &str, password: &str) -> RedisTarget {
    RedisTarget::url(format!(
        "redis://{user}:{password}@127.0.0.1:{}",
        redis.port
    ))
}

/// Credentials in `REDIS_USERNAME` / `REDIS_PASSWORD`, the URL without them.
fn in_env(redis: &RedisServer, user: &str, password: &str) -> RedisTarget {
    RedisTarget::url(redis.url())
        .with(env::REDIS_USERNAME, user)
        .with(env::REDIS_PASSWORD, password)
}

e2e::both_modes!(the_pipeline_runs_under_the_least_privilege_users);

/// Bulk orders, a malformed message, and a consumer killed while it holds orders (so the
/// recovery paths run too: re-drive or reclaim, leases, dead-lettering); pubsub gets its
/// credentials in the URL, streams in `REDIS_USERNAME`/`REDIS_PASSWORD`.
async fn the_pipeline_runs_under_the_least_privilege_users(mode: DeliveryMode) {
    let redis = redis_with_users().await;
    let credentials = match mode {
        DeliveryMode::Pubsub => in_url,
        DeliveryMode::Streams => in_env,
    };
    let order_target = credentials(&redis, DEFAULT_ORDER_SERVICE_USER, ORDER_SERVICE_PASSWORD);
    let consumer_target = credentials(&redis, DEFAULT_CONSUMER_USER, CONSUMER_PASSWORD);
    let mut fleet = Fleet::on(redis, mode, LOCK_TTL_MS);
    fleet.order_service_redis = Some(order_target);
    fleet.consumer_redis = Some(consumer_target.clone());
    fleet.start_order_service().await;
    fleet.start_consumer("c0", 0).await;
    fleet.start_consumer("c1", 0).await;
    // Always holding orders it has not applied, so killing it leaves work to recover.
    fleet.start_consumer("slow", 20).await;

    let initial = e2e::load::stock(&fleet.order_url(), &ITEMS, 1_000_000).await;
    let mut admin = fleet.redis.connection().await;
    fleet.deliver_raw(&mut admin, "not json").await;
    let url = fleet.order_url();
    let load = tokio::spawn(async move {
        place_orders(
            &url,
            orders("acl", 2_000, &ITEMS),
            16,
            Duration::from_secs(30),
        )
        .await
    });
    fleet.wait_applied_by("slow", 5).await;
    fleet.consumer("slow").process.signal(Signal::SIGKILL);
    let report = load.await.expect("the load task");
    assert_eq!(report.accepted.len(), 2_000);
    let v = fleet.verdict(&report, &initial, SETTLE).await;
    fleet.assert_clean(&v);
    assert_eq!(v.applied, 2_000, "{}", v.summary());
    // The last orders applied are the recovered ones, and a consumer counts them just after
    // their records are written: wait for the count rather than read it once.
    wait_until(
        "a recovery path to have run",
        Duration::from_secs(10),
        || async {
            let recovered = fleet
                .metric("c0", "eo_consumer_orders_recovered_total")
                .await
                + fleet
                    .metric("c1", "eo_consumer_orders_recovered_total")
                    .await;
            anyhow::ensure!(recovered > 0.0, "none recovered: {}", v.summary());
            Ok(())
        },
    )
    .await;
    if mode == DeliveryMode::Streams {
        wait_until(
            "the malformed entry to be dead-lettered",
            Duration::from_secs(10),
            || async {
                let dead = fleet.metric("c0", "eo_consumer_dead_lettered_total").await
                    + fleet.metric("c1", "eo_consumer_dead_lettered_total").await;
                anyhow::ensure!(dead >= 1.0, "dead-lettered {dead}");
                Ok(())
            },
        )
        .await;
    }

    // The dead-letter tools run with the consumer's settings, so under its user too.
    for args in [
        &["dead-letters", "list"][..],
        &["dead-letters", "replay", "--all"],
    ] {
        let run = consumer_command(
            &consumer_target.url,
            &consumer_target.env,
            &fleet.channel,
            mode,
            args,
        )
        .await;
        assert!(!run.stderr.contains("NOPERM"), "{args:?}: {}", run.stderr);
        if args[1] == "list" {
            assert!(run.ok, "{args:?}: {}", run.stderr);
        }
    }

    let log = fleet.redis.acl_log().await;
    assert!(
        log.is_empty(),
        "Redis refused something the fleet sent:\n{}\n{}",
        log.join("\n"),
        fleet.log_tails()
    );
    // And the services really ran as those users, not as the default one.
    let users = client_users(&mut admin).await;
    assert!(
        users.contains_key(DEFAULT_CONSUMER_USER) && users.contains_key(DEFAULT_ORDER_SERVICE_USER),
        "connections by user: {users:?}"
    );
}

/// How many client connections each user has (`CLIENT LIST`).
async fn client_users(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, usize> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    let mut users = HashMap::new();
    for line in list.lines() {
        if let Some(user) = line.split(' ').find_map(|f| f.strip_prefix("user=")) {
            *users.entry(user.to_owned()).or_default() += 1;
        }
    }
    users
}

/// The error code of a command run as `user`.
async fn refused_as(
    redis: &RedisServer,
    user: &str,
    password: &str,
    command: &redis::Cmd,
) -> Option<String> {
    let client = redis::Client::open(in_url(redis, user, password).url).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("logging in as {user}: {e}"));
    match command.query_async::<redis::Value>(&mut conn).await {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or("no code").to_owned()),
    }
}

#[tokio::test]
async fn commands_keys_and_channels_outside_the_rules_are_refused() {
    let redis = redis_with_users().await;
    let other = protocol::Keys::new(&"other_fleet".parse().unwrap());
    let own = fleet_keys();
    let mut get_own = redis::cmd("GET");
    get_own.arg(own.delivery_mode());
    let mut publish_own = redis::cmd("PUBLISH");
    publish_own.arg(env::DEFAULT_CHANNEL).arg("x");
    let mut flushall = redis::cmd("FLUSHALL");
    flushall.arg("ASYNC");
    let mut get_other = redis::cmd("GET");
    get_other.arg(other.delivery_mode());
    let mut get_outside = redis::cmd("GET");
    get_outside.arg("session:42");
    let mut publish_other = redis::cmd("PUBLISH");
    publish_other.arg("other_fleet").arg("x");
    let mut config = redis::cmd("CONFIG");
    config.arg("GET").arg("*");
    let mut read_stream = redis::cmd("XREADGROUP");
    read_stream
        .arg("GROUP")
        .arg("inventory")
        .arg("c")
        .arg("STREAMS")
        .arg(own.stream())
        .arg(">");

    let consumer = (DEFAULT_CONSUMER_USER, CONSUMER_PASSWORD);
    let order = (DEFAULT_ORDER_SERVICE_USER, ORDER_SERVICE_PASSWORD);
    // What the rules allow works (the controls for the refusals below).
    assert_eq!(
        refused_as(&redis, consumer.0, consumer.1, &get_own).await,
        None
    );
    assert_eq!(
        refused_as(&redis, order.0, order.1, &publish_own).await,
        None
    );
    for ((user, password), command, what) in [
        (consumer, &flushall, "FLUSHALL"),
        (order, &flushall, "FLUSHALL"),
        (consumer, &config, "CONFIG GET"),
        (consumer, &get_other, "GET on another fleet's key"),
        (
            consumer,
            &get_outside,
            "GET on a key outside eo:{channel}:*",
        ),
        (order, &publish_other, "PUBLISH on another channel"),
        (order, &read_stream, "XREADGROUP by the order service"),
    ] {
        assert_eq!(
            refused_as(&redis, user, password, command).await.as_deref(),
            Some("NOPERM"),
            "{user} ran {what}"
        );
    }
}

fn fleet_keys() -> protocol::Keys {
    protocol::Keys::new(&channel())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_keeps_the_services_unready_and_is_never_logged() {
    let redis = redis_with_users().await;
    let host_port = format!("127.0.0.1:{}", redis.port);
    let wrong = "wrong-Pa55-acl-d00d";
    let order_target = in_env(&redis, DEFAULT_ORDER_SERVICE_USER, wrong);
    let consumer_target = in_url(&redis, DEFAULT_CONSUMER_USER, wrong);
    let mut fleet = Fleet::on(redis, DeliveryMode::Streams, LOCK_TTL_MS);
    fleet.order_service_redis = Some(order_target);
    fleet.consumer_redis = Some(consumer_target.clone());
    fleet.spawn_order_service();
    fleet.spawn_consumer("c0", 0);
    let services: [(&Service, &str); 2] = [
        (
            fleet.order_service.as_ref().unwrap(),
            DEFAULT_ORDER_SERVICE_USER,
        ),
        (&fleet.consumers["c0"], DEFAULT_CONSUMER_USER),
    ];
    for (service, user) in services {
        let name = &service.process.name;
        wait_until(
            &format!("{name} to log that {user} cannot log in to {host_port}"),
            Duration::from_secs(20),
            || async {
                // The failure itself, with its hint: the startup line already names host, port
                // and user.
                let log = service.process.log();
                anyhow::ensure!(
                    log.contains(&host_port)
                        && log.contains(user)
                        && log.contains("wrong user or password"),
                    "not yet: {}",
                    service.process.log_tail(5)
                );
                Ok(())
            },
        )
        .await;
        let status = wait_until(
            &format!("{name} to answer /readyz"),
            Duration::from_secs(10),
            || fleet.readyz(service),
        )
        .await;
        assert_eq!(status, 503, "{name} is ready though it cannot log in");
        let log = service.process.log();
        assert!(!log.contains(wrong), "{name} printed the password:\n{log}");
    }
    // Redis saw the failed logins (and nothing else refused).
    let log = fleet.redis.acl_log().await;
    assert!(
        !log.is_empty() && log.iter().all(|e| e.starts_with("reason=auth ")),
        "{log:?}"
    );
}
