//! A real tonic gRPC service for the tests: unary echo (with an optional error status and trailer)
//! and a bidirectional streaming chat.

use std::net::SocketAddr;
use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    /// When non-zero, the server fails with this gRPC status code.
    #[prost(int32, tag = "2")]
    pub fail_code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

include!(concat!(env!("OUT_DIR"), "/oxidecar.test.Echo.rs"));

pub use echo_client::EchoClient;
pub use echo_server::{Echo, EchoServer};

/// Replies carry the server's name so tests can see where a call landed.
pub struct EchoService {
    pub name: String,
    /// When set, every unary call fails with this gRPC status code (a broken instance).
    pub always_fail: Option<i32>,
}

type ChatStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        // Echoed back so tests see which caller a sidecar named (Dapr's gRPC proxying).
        let caller = request.metadata().get("dapr-caller-app-id").cloned();
        let mut req = request.into_inner();
        if let Some(code) = self.always_fail {
            req.fail_code = code;
        }
        if req.fail_code != 0 {
            let mut status = Status::new(tonic::Code::from(req.fail_code), format!("failing as asked: {}", req.message));
            status.metadata_mut().insert("x-test-trailer", "present".parse().expect("ascii"));
            return Err(status);
        }
        let mut resp = Response::new(EchoReply { message: format!("{}: {}", self.name, req.message) });
        resp.metadata_mut().insert("x-served-by", self.name.parse().expect("ascii"));
        if let Some(caller) = caller {
            resp.metadata_mut().insert("x-echo-caller", caller);
        }
        Ok(resp)
    }

    type ChatStream = ChatStream;

    async fn chat(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<ChatStream>, Status> {
        let mut incoming = request.into_inner();
        let name = self.name.clone();
        let out = async_stream(move |tx| async move {
            while let Some(msg) = incoming.next().await {
                let reply = msg.map(|m| EchoReply { message: format!("{name}: {}", m.message.to_uppercase()) });
                if tx.send(reply).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// A stream fed by a spawned producer through a channel.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<EchoReply, Status>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<EchoReply, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Starts the echo service on a loopback port.
pub async fn grpc_upstream(name: &str) -> SocketAddr {
    serve_grpc(EchoService { name: name.to_string(), always_fail: None }).await
}

/// An echo service whose every unary call fails with gRPC status `code`.
pub async fn grpc_upstream_failing(name: &str, code: tonic::Code) -> SocketAddr {
    serve_grpc(EchoService { name: name.to_string(), always_fail: Some(code as i32) }).await
}

async fn serve_grpc(service: EchoService) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let addr = listener.local_addr().expect("addr");
    let svc = EchoServer::new(service);
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming).await;
    });
    addr
}
