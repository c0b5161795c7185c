//! Service invocation over the mesh: the proxy's `ServiceInvoker`. A call to another app becomes an
//! HTTP request on this sidecar's own outbound listener — routed, load balanced, pooled, retried,
//! circuit-broken and counted exactly like transparent traffic — to the peer sidecar's inbound
//! listener, which hands it to its runtime, which delivers it to the app (HTTP, or gRPC
//! `AppCallback.OnInvoke`). Calls to this sidecar's own app go straight to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oxidecar_runtime_apis::{InvokeError, InvokeRequest, InvokeResponse, LoopbackInvoker, ServiceInvoker};

use crate::http::REASON_HEADER;
use crate::shared::Shared;

/// Marks a request as service invocation that crossed the mesh: the peer's inbound listener hands
/// it to the runtime, and the runtime never forwards it again (no loops between sidecars).
pub const INVOKED_HEADER: HeaderName = HeaderName::from_static("x-oxidecar-invoke");
/// The calling app's id, as Dapr passes it to the target app.
pub const CALLER_HEADER: HeaderName = HeaderName::from_static("dapr-caller-app-id");
/// How long an invocation may take end to end before the caller gets an error.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MeshInvoker {
    app_id: String,
    caller: HeaderValue,
    local: LoopbackInvoker,
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl MeshInvoker {
    pub fn new(app_id: &str, local: LoopbackInvoker, shared: Arc<Shared>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            app_id: app_id.to_string(),
            caller: HeaderValue::from_str(app_id).unwrap_or(HeaderValue::from_static("unknown")),
            local,
            shared,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The outbound listener invocation rides (as a loopback-reachable address) and the authority
    /// calls to `app_id` are routed by, both from the running config.
    fn route_for(&self, app_id: &str) -> Result<(SocketAddr, String), String> {
        let tables = self.shared.tables.load();
        let inv = &tables.snapshot.invocation;
        let listener = tables
            .snapshot
            .listeners
            .iter()
            .find(|l| l.name == inv.listener)
            .ok_or_else(|| format!("no listener {:?} to send invocations on (config invocation.listener)", inv.listener))?;
        let mut addr = listener.address;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        Ok((addr, inv.authority(app_id).to_string()))
    }
}

fn unreachable(app_id: &str, reason: impl Into<String>) -> InvokeError {
    InvokeError::Unreachable { app_id: app_id.to_string(), reason: reason.into() }
}

#[async_trait::async_trait]
impl ServiceInvoker for MeshInvoker {
    async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        if req.app_id == self.app_id {
            return self.local.invoke(req).await;
        }
        if req.headers.contains_key(&INVOKED_HEADER) {
            return Err(unreachable(&req.app_id, format!("this sidecar serves app {:?}; a call that crossed the mesh is not forwarded again", self.app_id)));
        }
        let (addr, authority) = self.route_for(&req.app_id).map_err(|r| unreachable(&req.app_id, r))?;
        let mut uri = format!("http://{addr}/v1.0/invoke/{}/method/{}", req.app_id, req.method);
        if !req.query.is_empty() {
            uri.push('?');
            uri.push_str(&req.query);
        }
        let mut builder = http::Request::builder().method(req.http_verb.clone()).uri(&uri);
        for (name, value) in &req.headers {
            if !matches!(*name, header::HOST | header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION) {
                builder = builder.header(name, value);
            }
        }
        builder = builder.header(header::HOST, &authority).header(CALLER_HEADER, self.caller.clone()).header(INVOKED_HEADER, "1");
        if !req.content_type.is_empty() && !req.headers.contains_key(header::CONTENT_TYPE) {
            builder = builder.header(header::CONTENT_TYPE, &req.content_type);
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| unreachable(&req.app_id, format!("cannot build the request for {authority}: {e}")))?;
        let response = tokio::time::timeout(INVOKE_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| unreachable(&req.app_id, format!("no answer from {authority} within {INVOKE_TIMEOUT:?}")))?
            .map_err(|e| unreachable(&req.app_id, format!("outbound listener {addr}: {e}")))?;
        let (parts, body) = response.into_parts();
        if let Some(reason) = parts.headers.get(REASON_HEADER).and_then(|v| v.to_str().ok()) {
            // The mesh answered instead of the app: no route, upstream down, overflow, timeout.
            return Err(unreachable(&req.app_id, format!("{authority}: {} {reason}", parts.status.as_u16())));
        }
        let body = body
            .collect()
            .await
            .map_err(|e| InvokeError::Failed { app_id: req.app_id.clone(), method: req.method.clone(), reason: e.to_string() })?
            .to_bytes();
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Ok(InvokeResponse { status: parts.status, headers: parts.headers, body, content_type })
    }
}
