//! Real upstream servers on loopback: an HTTP server speaking HTTP/1.1 and h2c that reports what it
//! received, and a TCP echo server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How an HTTP upstream misbehaves, when it does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behavior {
    /// Every answer has this status.
    pub status: Option<u16>,
    /// Every answer waits this long first.
    pub delay: Option<Duration>,
}

/// A running HTTP upstream; its task ends with the test runtime. `kill` makes it vanish like a
/// crashed process (listener closed, open connections reset); `revive` brings it back on the same port.
pub struct HttpUpstream {
    pub addr: SocketAddr,
    pub name: String,
    pub requests: Arc<AtomicU64>,
    /// Every request as answered (the JSON described at [`http_upstream`]), in arrival order.
    pub seen: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    behavior: Behavior,
    alive: Arc<std::sync::atomic::AtomicBool>,
    accept: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HttpUpstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The requests received on `path` so far.
    pub fn seen_on(&self, path: &str) -> Vec<serde_json::Value> {
        self.seen.lock().map(|l| l.iter().filter(|r| r["path"] == path).cloned().collect()).unwrap_or_default()
    }

    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if let Some(task) = self.accept.lock().expect("lock").take() {
            task.abort();
        }
    }

    pub async fn revive(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind upstream");
        self.alive.store(true, Ordering::SeqCst);
        let task = accept_loop(listener, self.name.clone(), (self.requests.clone(), self.seen.clone()), self.behavior, self.alive.clone());
        *self.accept.lock().expect("lock") = Some(task);
    }
}

/// Answers every request with JSON describing it: `{"server", "method", "path", "version",
/// "headers", "body"}`. `/slow/<ms>` waits first; `/status/<code>` answers with that status.
pub async fn http_upstream(name: &str) -> HttpUpstream {
    serve_http(name, None).await
}

/// Like [`http_upstream`], but every answer has status `status` (a broken instance).
pub async fn http_upstream_failing(name: &str, status: u16) -> HttpUpstream {
    serve_http(name, Some(status)).await
}

/// An upstream that misbehaves as `behavior` says.
pub async fn http_upstream_with(name: &str, behavior: Behavior) -> HttpUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicU64::new(0));
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let task = accept_loop(listener, name.to_string(), (requests.clone(), seen.clone()), behavior, alive.clone());
    HttpUpstream { addr, name: name.to_string(), requests, seen, behavior, alive, accept: std::sync::Mutex::new(Some(task)) }
}

async fn serve_http(name: &str, forced_status: Option<u16>) -> HttpUpstream {
    http_upstream_with(name, Behavior { status: forced_status, delay: None }).await
}

/// The request count and log an upstream keeps.
type Counters = (Arc<AtomicU64>, Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

fn accept_loop(
    listener: TcpListener,
    name: String,
    counter: Counters,
    behavior: Behavior,
    alive: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (name, counter, alive) = (name.clone(), counter.clone(), alive.clone());
            tokio::spawn(async move {
                let conn_alive = alive.clone();
                let service = hyper::service::service_fn(move |req| {
                    let (name, counter, alive) = (name.clone(), counter.clone(), alive.clone());
                    async move {
                        if !alive.load(Ordering::SeqCst) {
                            return Err("killed");
                        }
                        Ok::<_, &str>(answer(&name, &counter, behavior, req).await)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                // A killed upstream drops its open connections too, as a dead process would.
                loop {
                    tokio::select! {
                        _ = &mut conn => return,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {
                            if !conn_alive.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

async fn answer(
    name: &str,
    (counter, seen): &Counters,
    behavior: Behavior,
    req: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    counter.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|m| m.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(delay) = behavior.delay {
        tokio::time::sleep(delay).await;
    }
    let status = behavior.status.or_else(|| path.strip_prefix("/status/").and_then(|c| c.parse::<u16>().ok())).unwrap_or(200);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("").to_string())))
        .collect();
    let json = serde_json::json!({
        "server": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    if let Ok(mut log) = seen.lock() {
        log.push(json.clone());
    }
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(json.to_string())))
        .expect("response")
}

/// A TCP server that echoes every byte back; returns its address.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A server-first TCP server (like SMTP or MySQL): greets before the client speaks, then echoes.
pub async fn tcp_greeter(greeting: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind greeter");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                if stream.write_all(greeting).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
