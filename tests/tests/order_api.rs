//! The order service's HTTP contract against a real redis-server: status codes, error texts that
//! name the field, idempotent retries, and the order's status once a consumer applied it.

use std::time::Duration;

use e2e::fleet::Fleet;
use e2e::net::wait_until;
use protocol::DeliveryMode;
use serde_json::{Value, json};

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = client.post(format!("{url}/orders")).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("POST /orders");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// A refused request: body, headers, expected status, expected start of the error text.
type Refusal = (
    String,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_api_keeps_its_contract() {
    let fleet = Fleet::start(DeliveryMode::Pubsub, 1, 1_000).await;
    let (url, client) = (fleet.order_url(), reqwest::Client::new());
    let put = client
        .put(format!("{url}/inventory/001"))
        .json(&json!({"quantity": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let order = json!({"orderId": "29", "items": [{"id": "001", "quantity": 2}]}).to_string();
    let (status, first) = post(&client, &url, order.clone(), &[JSON]).await;
    assert_eq!(
        (status, first["orderId"].as_str(), first["status"].as_str()),
        (202, Some("29"), Some("accepted"))
    );
    // A retry: same answer, same event id.
    let (status, again) = post(&client, &url, order, &[JSON]).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]));
    // The same orderId for other goods is a conflict, not a new order.
    let other = json!({"orderId": "29", "items": [{"id": "001", "quantity": 3}]}).to_string();
    let (status, conflict) = post(&client, &url, other, &[JSON]).await;
    assert_eq!((status, &conflict["id"]), (409, &first["id"]));
    // The orderId may come in the Idempotency-Key header instead.
    let (status, keyed) = post(
        &client,
        &url,
        r#"{"items":[{"id":"001","quantity":1}]}"#.into(),
        &[JSON, ("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!((status, keyed["orderId"].as_str()), (202, Some("k-1")));

    let refused: [Refusal; 6] = [
        (
            "{}".into(),
            &[],
            415,
            "Content-Type must be application/json",
        ),
        (
            r#"{"items":[{"id":"001","quantity":1}"#.into(),
            &[JSON],
            400,
            "body is not valid JSON",
        ),
        (
            r#"{"items":[{"id":"001","quantity":"2"}]}"#.into(),
            &[JSON],
            422,
            "items[0].quantity: invalid type",
        ),
        (
            r#"{"items":[{"id":"001","quantity":1}],"price":3}"#.into(),
            &[JSON],
            422,
            "price: unknown field `price`",
        ),
        (
            r#"{"items":[{"id":"a b","quantity":1}]}"#.into(),
            &[JSON],
            422,
            "items[0].id must be 1 to 64",
        ),
        (
            format!(
                r#"{{"items":[{{"id":"{}","quantity":1}}]}}"#,
                "x".repeat(70 * 1024)
            ),
            &[JSON],
            413,
            "body must be at most 65536 bytes",
        ),
    ];
    for (body, headers, want_status, want_error) in refused {
        let (status, error) = post(&client, &url, body, headers).await;
        let text = error["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            status == want_status && text.starts_with(want_error),
            "{want_status} {want_error}: got {status} {text}"
        );
    }

    let applied = wait_until(
        "order 29 to be applied",
        Duration::from_secs(10),
        || async {
            let record: Value = client
                .get(format!("{url}/orders/29"))
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(record["status"] == "applied", "{record}");
            Ok(record)
        },
    )
    .await;
    assert_eq!(
        (&applied["id"], applied["consumer"].as_str()),
        (&first["id"], Some("c0"))
    );
    // 10 - 2 (order 29, applied once despite the retry) - 1 (k-1), once both are applied.
    wait_until(
        "both orders to be applied",
        Duration::from_secs(10),
        || async {
            let stock: Value = client
                .get(format!("{url}/inventory/001"))
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(stock["quantity"] == 7, "{stock}");
            Ok(())
        },
    )
    .await;
    let missing = client
        .get(format!("{url}/orders/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
