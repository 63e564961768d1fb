//! An order service and a consumer fleet in different delivery modes on one channel: every order
//! is accepted and none is ever applied. Against a real redis-server and the real binaries, the
//! consumer in the wrong mode must say so (`/readyz` 503 naming both modes, the mismatch gauge 1,
//! one ERROR), and go back to normal by itself once the modes agree.

use std::time::Duration;

use e2e::fleet::{Fleet, Service};
use e2e::net::wait_until;
use protocol::DeliveryMode;
use serde_json::{Value, json};

const GAUGE: &str = "eo_consumer_delivery_mode_mismatch";
/// Several of the consumer's mode checks (every 2 s) and a restart fit in it.
const TIMEOUT: Duration = Duration::from_secs(20);

/// `/readyz` of `service`: its status and body.
async fn readyz(service: &Service) -> anyhow::Result<(u16, String)> {
    let resp = reqwest::get(format!("{}/readyz", service.base_url)).await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// Waits until consumer `name` reports the mismatch of its own mode with `theirs`.
async fn wait_mismatched(fleet: &Fleet, name: &str, ours: &str, theirs: &str) {
    let service = &fleet.consumers[name];
    let parts = [
        "delivery-mode".to_owned(),
        format!("`{theirs}`"),
        format!("`{ours}`"),
        format!("`{}`", fleet.channel),
        "DELIVERY_MODE".to_owned(),
    ];
    // Not ready for this reason, with the gauge up: a 503 for another reason (Redis not yet
    // reached) does not count.
    wait_until(
        &format!("{name} to report the mismatch"),
        TIMEOUT,
        || async {
            let (status, body) = readyz(service).await?;
            anyhow::ensure!(status == 503, "/readyz answered {status}: {body}");
            for part in &parts {
                anyhow::ensure!(
                    body.contains(part.as_str()),
                    "{part} missing from /readyz: {body}"
                );
            }
            let gauge = fleet.metric(name, GAUGE).await;
            anyhow::ensure!(gauge == 1.0, "{GAUGE} is {gauge}");
            Ok(())
        },
    )
    .await;
}

/// Waits until consumer `name` is ready with the gauge back at 0.
async fn wait_agreeing(fleet: &Fleet, name: &str) {
    let service = &fleet.consumers[name];
    wait_until(&format!("{name} to be ready again"), TIMEOUT, || async {
        let (status, body) = readyz(service).await?;
        anyhow::ensure!(status == 200, "/readyz answered {status}: {body}");
        Ok(())
    })
    .await;
    assert_eq!(
        fleet.metric(name, GAUGE).await,
        0.0,
        "{}",
        fleet.log_tails()
    );
}

/// The consumer's ERROR lines about the mismatch (logs are JSON lines).
fn mismatch_errors(fleet: &Fleet, name: &str) -> usize {
    fleet.consumers[name]
        .process
        .log()
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#) && l.contains("order_service_mode"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_in_the_other_mode_is_not_ready_until_the_modes_agree() {
    let mut fleet = Fleet::new(DeliveryMode::Streams, 1_000, false).await;
    // No order service has run on the channel yet: nothing to disagree with.
    fleet.start_consumer("streams-0", 0).await;
    assert_eq!(fleet.metric("streams-0", GAUGE).await, 0.0);

    fleet.mode = DeliveryMode::Pubsub;
    fleet.start_order_service().await;
    let client = reqwest::Client::new();
    let url = fleet.order_url();
    let put = client
        .put(format!("{url}/inventory/001"))
        .json(&json!({"quantity": 10}))
        .send()
        .await
        .expect("PUT /inventory/001");
    assert_eq!(put.status(), 200);
    let order = json!({"orderId": "stranded", "items": [{"id": "001", "quantity": 2}]});
    let posted = client
        .post(format!("{url}/orders"))
        .json(&order)
        .send()
        .await
        .expect("POST /orders");
    assert_eq!(posted.status(), 202, "the order service accepts regardless");

    wait_mismatched(&fleet, "streams-0", "streams", "pubsub").await;
    assert_eq!(
        mismatch_errors(&fleet, "streams-0"),
        1,
        "{}",
        fleet.log_tails()
    );

    // A consumer in the order service's mode is ready, and applies what was stranded.
    fleet.start_consumer("pubsub-0", 0).await;
    wait_until("the stranded order to be applied", TIMEOUT, || async {
        let record: Value = client
            .get(format!("{url}/orders/stranded"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(record["status"] == "applied", "{record}");
        Ok(())
    })
    .await;
    assert_eq!(fleet.metric("pubsub-0", GAUGE).await, 0.0);

    // The order service switched to streams: the streams consumer recovers without a restart,
    // and now the pubsub one is in the wrong mode.
    let mut old = fleet
        .order_service
        .take()
        .expect("the order service was started");
    old.process.terminate(Duration::from_secs(10));
    fleet.mode = DeliveryMode::Streams;
    fleet.start_order_service().await;
    wait_agreeing(&fleet, "streams-0").await;
    wait_mismatched(&fleet, "pubsub-0", "pubsub", "streams").await;
    assert_eq!(
        mismatch_errors(&fleet, "streams-0"),
        1,
        "one ERROR per change, not per check\n{}",
        fleet.log_tails()
    );
}
