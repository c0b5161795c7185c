//! Dapr's gRPC proxying on the proxy's side: a gRPC call the runtime hands over (`dapr-app-id: X`)
//! goes out, still HTTP/2 and streaming both ways, on this sidecar's outbound listener with
//! authority X's invocation authority — so it is routed, balanced, retried, put in its lane and
//! counted like any mesh request — and reaches X's sidecar, whose inbound hands it to X's gRPC
//! server. A call for this sidecar's own app goes straight to the app.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::shared::Shared;

/// Connects the gRPC proxying client: the local app's authority (its app id) to the app's port,
/// every other authority to the invocation listener.
#[derive(Clone)]
pub struct MeshConnector {
    pub shared: Arc<Shared>,
    /// This sidecar's app id and its gRPC app's address.
    pub local_app: Option<(Arc<str>, SocketAddr)>,
}

impl tower_service::Service<Uri> for MeshConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let target = match &self.local_app {
            Some((id, addr)) if uri.host() == Some(&**id) => Ok(*addr),
            _ => super::invocation_listener(&self.shared),
        };
        Box::pin(async move {
            let addr = target.map_err(std::io::Error::other)?;
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}
