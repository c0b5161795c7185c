//! A backend that goes away, seen through the gRPC API: calls answer UNAVAILABLE naming the
//! component within its timeout (no hang), the runtime keeps serving, and the component works again
//! when the backend returns. The outage is a relay in front of the shared Redis that the test cuts;
//! the server itself is never stopped.

mod support;
#[allow(dead_code)]
#[path = "../../tests/src/relay.rs"]
mod relay;

use std::time::{Duration, Instant};

use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use oxidecar_runtime_apis::AppProtocol;
use support::{TestRuntime, temp_dir};
use tonic::Code;

#[tokio::test]
async fn backend_down_is_unavailable_naming_the_component_and_recovers() -> anyhow::Result<()> {
    let relay = relay::Relay::start("127.0.0.1:6379").await;
    let dir = temp_dir("backend-outage");
    let redis = |name: &str, ty: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{}'}}\n  - {{name: timeout, value: 1s}}\n  - {{name: dialTimeout, value: 500ms}}\n",
            relay.addr()
        )
    };
    std::fs::write(dir.join("c.yaml"), [redis("redisstore", "state.redis"), redis("redislock", "lock.redis")].join("---\n"))?;
    let rt = TestRuntime::start("outage-app", Some(dir.clone()), None, AppProtocol::Http).await?;
    let mut client = DaprClient::connect(format!("http://{}", rt.grpc)).await?;
    let key = format!("outage-{}", std::process::id());
    let save = |value: &str| pb::SaveStateRequest {
        store_name: "redisstore".into(),
        states: vec![dapr::dapr::proto::common::v1::StateItem { key: key.clone(), value: value.as_bytes().to_vec(), ..Default::default() }],
    };
    let get = pb::GetStateRequest { store_name: "redisstore".into(), key: key.clone(), ..Default::default() };
    client.save_state(save("before")).await?;

    relay.cut();
    let start = Instant::now();
    let err = client.get_state(get.clone()).await.expect_err("backend down");
    assert!(start.elapsed() < Duration::from_secs(3), "answered after {:?}", start.elapsed());
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("redisstore") && err.message().contains(&relay.addr()), "{}", err.message());
    let lock = pb::TryLockRequest { store_name: "redislock".into(), resource_id: key.clone(), lock_owner: "me".into(), expiry_in_seconds: 5 };
    let err = client.try_lock_alpha1(lock.clone()).await.expect_err("backend down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("redislock"), "{}", err.message());
    // The runtime keeps serving what does not need the backend.
    let meta = client.get_metadata(pb::GetMetadataRequest::default()).await?.into_inner();
    assert_eq!(meta.registered_components.len(), 2);

    relay.restore();
    let end = Instant::now() + Duration::from_secs(10);
    let value = loop {
        match client.get_state(get.clone()).await {
            Ok(r) => break r.into_inner().data,
            Err(e) if Instant::now() < end => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("state.redis did not reconnect: {e:?}"),
        }
    };
    assert_eq!(value, b"before");
    assert!(client.try_lock_alpha1(lock).await?.into_inner().success);
    client.delete_state(pb::DeleteStateRequest { store_name: "redisstore".into(), key, ..Default::default() }).await?;
    rt.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Configuration and bindings RPCs reach the Redis-backed components (SubscribeConfiguration's
/// first message carries the id, later ones the changes written straight to Redis).
#[tokio::test]
async fn configuration_and_bindings_rpcs_reach_redis_backends() -> anyhow::Result<()> {
    let dir = temp_dir("redis-rpcs");
    let yaml = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: rediscfg}\nspec:\n  type: configuration.redis\n  metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: redisbind}\nspec:\n  type: bindings.redis\n  metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n";
    std::fs::write(dir.join("c.yaml"), yaml)?;
    let rt = TestRuntime::start("rpc-app", Some(dir.clone()), None, AppProtocol::Http).await?;
    let mut client = DaprClient::connect(format!("http://{}", rt.grpc)).await?;
    let key = format!("rpc-cfg-{}-{}", std::process::id(), rt.grpc.port());
    let redis = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut r = redis.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("SET").arg(&key).arg("on||1").query_async(&mut r).await?;

    let got = client.get_configuration(pb::GetConfigurationRequest { store_name: "rediscfg".into(), keys: vec![key.clone()], ..Default::default() }).await?;
    let item = &got.into_inner().items[&key];
    assert_eq!((item.value.as_str(), item.version.as_str()), ("on", "1"));
    let mut stream = client
        .subscribe_configuration(pb::SubscribeConfigurationRequest { store_name: "rediscfg".into(), keys: vec![key.clone()], ..Default::default() })
        .await?
        .into_inner();
    let first = stream.message().await?.expect("first message");
    assert!(!first.id.is_empty() && first.items.is_empty());
    let _: () = redis::cmd("SET").arg(&key).arg("off||2").query_async(&mut r).await?;
    let update = tokio::time::timeout(Duration::from_secs(5), stream.message()).await?.expect("open").expect("update");
    assert_eq!(update.items[&key].value, "off");

    let invoke = |op: &str, data: &[u8]| pb::InvokeBindingRequest {
        name: "redisbind".into(),
        operation: op.into(),
        data: data.to_vec(),
        metadata: [("key".to_string(), key.clone())].into(),
    };
    client.invoke_binding(invoke("create", b"payload")).await?;
    assert_eq!(client.invoke_binding(invoke("get", b"")).await?.into_inner().data, b"payload");
    let err = client.invoke_binding(invoke("increment", b"")).await.expect_err("not an operation of bindings.redis");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("create, get, delete"), "{}", err.message());
    client.invoke_binding(invoke("delete", b"")).await?;
    rt.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
