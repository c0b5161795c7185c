//! Service invocation over the mesh: the proxy's `ServiceInvoker`. A call to another app becomes an
//! HTTP request on this sidecar's own outbound listener — handed to that listener's proxy in
//! process (see `inproc`), then routed, load balanced, pooled, retried, circuit-broken and counted
//! exactly like transparent traffic — to the peer sidecar's inbound listener, which delivers it to
//! the app (HTTP directly, or gRPC `AppCallback.OnInvoke` through its runtime). Calls to this
//! sidecar's own app go straight to it. Dapr's gRPC proxying rides the same listener over loopback
//! TCP (see `grpc`).

mod grpc;
mod inproc;

pub use inproc::InProcessListeners;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxidecar_runtime_apis::{GrpcBody, InvokeError, InvokeRequest, InvokeResponse, LoopbackInvoker, ServiceInvoker};

use crate::http::REASON_HEADER;
use crate::shared::Shared;

/// Marks a request as service invocation that crossed the mesh: the peer's inbound listener hands
/// it to the runtime, and the runtime never forwards it again (no loops between sidecars).
pub const INVOKED_HEADER: HeaderName = HeaderName::from_static("x-oxidecar-invoke");
/// The calling app's id, as Dapr passes it to the target app.
pub const CALLER_HEADER: HeaderName = HeaderName::from_static("dapr-caller-app-id");
/// The target app's id, as Dapr passes it on proxied gRPC calls.
pub const CALLEE_HEADER: HeaderName = HeaderName::from_static("dapr-callee-app-id");
/// How long an invocation may take end to end before the caller gets an error.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MeshInvoker {
    app_id: String,
    caller: HeaderValue,
    local: LoopbackInvoker,
    shared: Arc<Shared>,
    /// The listeners' proxies, for handing calls to the invocation listener in process.
    listeners: Arc<InProcessListeners>,
    /// HTTP/2 client for proxied gRPC calls (pooled per target authority).
    grpc_client: Client<grpc::MeshConnector, GrpcBody>,
    /// Whether this sidecar's app serves gRPC (then proxied calls for it go straight to it).
    grpc_app: bool,
}

/// The outbound listener invocation rides, as a loopback-reachable address, from the running config.
fn invocation_listener(shared: &Shared) -> Result<SocketAddr, String> {
    let tables = shared.tables.load();
    let inv = &tables.snapshot.invocation;
    let listener = tables
        .snapshot
        .listeners
        .iter()
        .find(|l| l.name == inv.listener)
        .ok_or_else(|| format!("no listener {:?} to send invocations on (config invocation.listener)", inv.listener))?;
    Ok(reachable(listener.address))
}

/// A listener's address as this process reaches it: a wildcard address becomes loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    addr
}

impl MeshInvoker {
    /// `grpc_app`: the local app's address when it speaks gRPC.
    pub fn new(app_id: &str, local: LoopbackInvoker, grpc_app: Option<SocketAddr>, shared: Arc<Shared>, listeners: Arc<InProcessListeners>) -> Self {
        let mesh = grpc::MeshConnector { shared: shared.clone(), local_app: grpc_app.map(|a| (Arc::from(app_id), a)) };
        Self {
            app_id: app_id.to_string(),
            caller: HeaderValue::from_str(app_id).unwrap_or(HeaderValue::from_static("unknown")),
            local,
            shared,
            listeners,
            grpc_client: Client::builder(TokioExecutor::new()).http2_only(true).build(mesh),
            grpc_app: grpc_app.is_some(),
        }
    }
}

/// Sends `request` to the invocation listener in process and reads the whole answer.
async fn exchange(listeners: &InProcessListeners, shared: &Shared, request: http::Request<Full<Bytes>>) -> Result<(http::response::Parts, Bytes), String> {
    let (parts, body) = listeners.send(shared, request).await?.into_parts();
    let body = body.collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
    Ok((parts, body))
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
        let authority = self.shared.tables.load().snapshot.invocation.authority(&req.app_id).to_string();
        // The pool's authority only picks the in-memory connection; the listener routes on `Host`.
        let mut uri = format!("http://{}/v1.0/invoke/{}/method/{}", inproc::POOL_AUTHORITY, req.app_id, req.method);
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
        let (parts, body) = tokio::time::timeout(INVOKE_TIMEOUT, exchange(&self.listeners, &self.shared, request))
            .await
            .map_err(|_| unreachable(&req.app_id, format!("no answer from {authority} within {INVOKE_TIMEOUT:?}")))?
            .map_err(|e| unreachable(&req.app_id, format!("{authority}: {e}")))?;
        if let Some(reason) = parts.headers.get(REASON_HEADER).and_then(|v| v.to_str().ok()) {
            // The mesh answered instead of the app: no route, upstream down, overflow, timeout.
            return Err(unreachable(&req.app_id, format!("{authority}: {} {reason}", parts.status.as_u16())));
        }
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Ok(InvokeResponse { status: parts.status, headers: parts.headers, body, content_type })
    }
    async fn proxy_grpc(&self, app_id: &str, req: http::Request<GrpcBody>) -> Result<http::Response<GrpcBody>, InvokeError> {
        let local = app_id == self.app_id;
        if local && !self.grpc_app {
            return Err(unreachable(app_id, "the local app does not serve gRPC (start the sidecar with --app-port and --app-protocol grpc)"));
        }
        if !local && req.headers().contains_key(&INVOKED_HEADER) {
            return Err(unreachable(app_id, format!("this sidecar serves app {:?}; a call that crossed the mesh is not forwarded again", self.app_id)));
        }
        // The local app is reached by its app id (the connector knows its port); other apps by
        // their invocation authority, on the invocation listener.
        let authority = if local { app_id.to_string() } else { self.shared.tables.load().snapshot.invocation.authority(app_id).to_string() };
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{authority}{path}")
            .parse()
            .map_err(|e| unreachable(app_id, format!("{authority:?} is not a usable authority: {e}")))?;
        parts.headers.remove(header::HOST);
        parts.headers.insert(CALLER_HEADER, self.caller.clone());
        if let Ok(callee) = HeaderValue::from_str(app_id) {
            parts.headers.insert(CALLEE_HEADER, callee);
        }
        if !local {
            parts.headers.insert(INVOKED_HEADER, HeaderValue::from_static("1"));
        }
        let response = self
            .grpc_client
            .request(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| unreachable(app_id, format!("{authority}: {e}")))?;
        if let Some(reason) = response.headers().get(REASON_HEADER).and_then(|v| v.to_str().ok()) {
            // The mesh answered instead of the app: no route, upstream down, overflow, timeout.
            return Err(unreachable(app_id, format!("{authority}: {reason}")));
        }
        Ok(response.map(GrpcBody::new))
    }
}
