//! Lanes in pub/sub, on Redis Streams: app `orders` runs a base copy and a lane-`dev` copy, each
//! behind its own sidecar. A message published while handling a lane-dev request reaches only the
//! dev copy; one published in a lane `orders` has no copy in (qa) falls back to the base copy; base
//! messages never reach the dev copy. The lane reaches the app and its onward calls stay in it.

use oxidecar_tests::upstream::{HttpUpstream, http_upstream};
use oxidecar_tests::*;
use serde_json::Value;

const SUBSCRIBER_NODE: &str = "node: { workload: checkout-v1, namespace: shop }";

/// Components and the subscription of `orders` to `topic` on Redis (real server on 6379).
fn resources(topic: &str) -> TempDir {
    let dir = TempDir::new("pubsub-lanes");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{ name: events }}\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - {{ name: redisHost, value: \"127.0.0.1:6379\" }}\n---\napiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {{ name: orders-events }}\nspec:\n  pubsubname: events\n  topic: {topic}\n  routes: {{ default: /events }}\nscopes: [orders]\n"
    );
    std::fs::write(dir.0.join("pubsub.yaml"), yaml).expect("write resources");
    dir
}

/// A sidecar of app `orders` (workload lane `lane`) whose mesh knows the `orders` cluster: a base
/// endpoint and a dev endpoint. Returns it with its outbound listener's port.
async fn orders_sidecar(app: &HttpUpstream, lane: Option<&str>, res: &TempDir, base_api: &HttpUpstream, dev_api: &HttpUpstream) -> (Proxy, u16) {
    let out = free_port();
    let node = match lane {
        Some(l) => format!("node: {{ workload: orders-{l}, namespace: shop, labels: {{ lane: {l} }} }}"),
        None => "node: { workload: orders-v1, namespace: shop }".to_string(),
    };
    let endpoints = format!("[{{ address: {} }}, {{ address: {}, labels: {{ lane: dev }} }}]", base_api.addr, dev_api.addr);
    let config = checkout_sidecar_config(out, &endpoints).replace(SUBSCRIBER_NODE, &node);
    let res_path = res.0.display().to_string();
    let p = Proxy::start_with_args(AdminPorts::new(), &config, &["--app-id", "orders", "--app-port", &app.port().to_string(), "--resources-path", &res_path]).await;
    (p, out)
}

/// The `id` field of each event an app received, with the lane header it came with.
fn received(app: &HttpUpstream) -> Vec<(String, String)> {
    app.seen_on("/events")
        .iter()
        .map(|r| {
            let body = r["body"].as_str().unwrap_or_default();
            let id = serde_json::from_str::<Value>(body).ok().and_then(|ce| ce["data"]["id"].as_str().map(str::to_string));
            // A raw payload arrives as it was published.
            let id = id.unwrap_or_else(|| body.to_string());
            (id, r["headers"]["x-lane"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

async fn publish(port: u16, topic: &str, query: &str, headers: &[(&str, &str)], body: &str) {
    let url = format!("http://127.0.0.1:{port}/v1.0/publish/events/{topic}{query}");
    let r = send(&http1_client(), "POST", &url, &[&[("content-type", "application/json")], headers].concat(), body).await.expect("publish");
    assert_eq!(r.status, 204, "publish {body}: {}", r.body);
}

#[tokio::test]
async fn lane_messages_reach_the_lane_subscriber_else_the_base_one() {
    let topic = format!("lanes-{}-{}", std::process::id(), free_port());
    let res = resources(&topic);
    let (base_app, dev_app) = (http_upstream("orders-base").await, http_upstream("orders-dev").await);
    let (base_api, dev_api) = (http_upstream("orders-api").await, http_upstream("orders-api-dev").await);
    let (base, _) = orders_sidecar(&base_app, None, &res, &base_api, &dev_api).await;
    let (dev, dev_out) = orders_sidecar(&dev_app, Some("dev"), &res, &base_api, &dev_api).await;
    let p_http = free_port();
    let _publisher = Proxy::start_with_args(
        AdminPorts::new(),
        "",
        &["--app-id", "checkout", "--dapr-http-port", &p_http.to_string(), "--resources-path", &res.0.display().to_string()],
    )
    .await;

    publish(p_http, &topic, "", &[], r#"{"id": "base-1"}"#).await;
    publish(p_http, &topic, "", &[("x-lane", "dev")], r#"{"id": "dev-1"}"#).await;
    publish(p_http, &topic, "", &[("baggage", "user=7,lane=dev")], r#"{"id": "dev-2"}"#).await;
    publish(p_http, &topic, "?metadata.rawPayload=true", &[("x-lane", "dev")], "dev-raw").await;
    publish(p_http, &topic, "", &[("x-lane", "qa")], r#"{"id": "qa-1"}"#).await;
    // Each copy handles the stream in order: once its last message is in, it has seen them all.
    publish(p_http, &topic, "", &[], r#"{"id": "end"}"#).await;
    publish(p_http, &topic, "", &[("x-lane", "dev")], r#"{"id": "end-dev"}"#).await;
    let done = |app: &HttpUpstream, last: &str| {
        let last = last.to_string();
        let seen = received(app);
        async move { seen.iter().any(|(id, _)| *id == last).then_some(()) }
    };
    let within = std::time::Duration::from_secs(20);
    assert!(eventually(within, || done(&base_app, "end")).await.is_some(), "base copy got {:?}", received(&base_app));
    assert!(eventually(within, || done(&dev_app, "end-dev")).await.is_some(), "dev copy got {:?}", received(&dev_app));

    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(received(&base_app), pairs(&[("base-1", ""), ("qa-1", "qa"), ("end", "")]), "base: base messages and the qa fallback, nothing of dev");
    assert_eq!(
        received(&dev_app),
        pairs(&[("dev-1", "dev"), ("dev-2", "dev"), ("dev-raw", "dev"), ("end-dev", "dev")]),
        "dev: only its lane's messages, each once"
    );

    // The lane rides the CloudEvent too, and the dev copy's onward calls in the event's trace stay in dev.
    let event = dev_app.seen_on("/events").into_iter().next().expect("an event");
    let ce: Value = serde_json::from_str(event["body"].as_str().unwrap_or_default()).expect("cloudevent");
    assert_eq!(ce["lane"], "dev");
    let traceparent = event["headers"]["traceparent"].as_str().expect("trace context given to the app").to_string();
    let onward = send(&http1_client(), "GET", &format!("http://127.0.0.1:{dev_out}/status"), &[("host", "orders.shop.svc.cluster.local"), ("traceparent", &traceparent)], "")
        .await
        .expect("onward call");
    assert_eq!(serde_json::from_str::<Value>(&onward.body).expect("json")["server"], "orders-api-dev", "{}", onward.body);

    // Delivery metrics show each message's lane and what each copy did with it.
    let count = |m: &str, lane: &str, outcome: &str| metric_sum(m, "oxidecar_pubsub_deliveries_total", &[("topic", &topic), ("lane", lane), ("outcome", outcome)]);
    let (bm, dm) = (base.metrics().await, dev.metrics().await);
    assert_eq!((count(&bm, "base", "delivered"), count(&bm, "qa", "delivered"), count(&bm, "dev", "skipped")), (2.0, 1.0, 4.0), "{bm}");
    assert_eq!((count(&dm, "dev", "delivered"), count(&dm, "base", "skipped"), count(&dm, "qa", "skipped")), (4.0, 2.0, 1.0), "{dm}");
}
