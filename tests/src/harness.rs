//! Starting the binary, free ports, polling with deadlines, and HTTP clients.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Test ports come from below Linux's ephemeral range (32768-60999): a port picked there and
/// released could be taken by any outgoing connection before the proxy binds it.
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A port that is free now and that no other caller in this process was given. Each test binary
/// starts at a different offset, so concurrent test processes rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id().wrapping_mul(7919)) % span, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = TEST_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

/// The `oxidecar` binary cargo built next to this test (`target/<profile>/oxidecar`).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("OXIDECAR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("oxidecar");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test --workspace` so the binary is built", bin.display());
    bin
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ports of one running proxy's operator endpoints.
#[derive(Debug, Clone, Copy)]
pub struct AdminPorts {
    pub admin: u16,
    pub metrics: u16,
    pub merged_metrics: u16,
    pub health: u16,
}

impl AdminPorts {
    pub fn new() -> Self {
        Self { admin: free_port(), metrics: free_port(), merged_metrics: free_port(), health: free_port() }
    }

    /// The `admin:` section of a config file using these ports.
    pub fn yaml(&self) -> String {
        format!(
            "admin:\n  address: 127.0.0.1:{}\n  metrics_addresses: [127.0.0.1:{}, 127.0.0.1:{}]\n  health_address: 127.0.0.1:{}\n",
            self.admin, self.metrics, self.merged_metrics, self.health
        )
    }
}

impl Default for AdminPorts {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `oxidecar run`, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub ports: AdminPorts,
    pub config: PathBuf,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oxidecar-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Proxy {
    /// Writes `ports.yaml() + body` to a config file and starts the proxy on it, waiting for `/ready`.
    pub async fn start(ports: AdminPorts, body: &str) -> Proxy {
        Self::start_with_args(ports, body, &[]).await
    }

    pub async fn start_with_args(ports: AdminPorts, body: &str, args: &[&str]) -> Proxy {
        Self::start_logging_to(ports, body, args, Stdio::inherit()).await
    }

    /// Like [`Proxy::start_with_args`], with the proxy's stderr (its log) sent to `stderr`.
    pub async fn start_logging_to(ports: AdminPorts, body: &str, args: &[&str], stderr: Stdio) -> Proxy {
        let dir = TempDir::new("proxy");
        let config = dir.0.join("mesh.yaml");
        std::fs::write(&config, format!("{}{body}", ports.yaml())).expect("write config");
        // Free runtime API ports, so proxies in parallel tests do not fight over 50001 and 3500.
        let mut runtime_ports = Vec::new();
        for flag in ["--dapr-grpc-port", "--dapr-http-port"] {
            if !args.contains(&flag) {
                runtime_ports.extend([flag.to_string(), free_port().to_string()]);
            }
        }
        let child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--concurrency")
            .arg("2")
            .args(&runtime_ports)
            .args(args)
            .env("RUST_LOG", std::env::var("OXIDECAR_TEST_LOG").unwrap_or_else(|_| "info,pingora=warn,pingora_core::connectors=off".into()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn oxidecar");
        let mut proxy = Proxy { child, ports, config, _dir: dir };
        let url = format!("http://127.0.0.1:{}/ready", ports.admin);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut ready = None;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("oxidecar exited during start-up with {status}");
            }
            if matches!(http_get(&url).await, Ok((200, _))) {
                ready = Some(());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ready.is_some(), "oxidecar did not become ready");
        proxy
    }

    /// Replaces the config file body (admin section kept).
    pub fn rewrite_config(&self, body: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, format!("{}{body}", self.ports.yaml())).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Metrics once no request is in flight: a client can see its response before the proxy has
    /// finished logging the request, so counters settle a moment later.
    pub async fn metrics(&self) -> String {
        let settled = eventually(Duration::from_secs(5), || async {
            let m = self.metrics_now().await;
            (metric_sum(&m, "oxidecar_http_active_requests", &[]) == 0.0).then_some(m)
        })
        .await;
        match settled {
            Some(m) => m,
            None => self.metrics_now().await,
        }
    }

    /// Metrics as they are right now (use under load).
    pub async fn metrics_now(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/stats/prometheus", self.ports.metrics)).await.expect("metrics").1
    }

    pub async fn admin(&self, path: &str) -> (u16, String) {
        http_get(&format!("http://127.0.0.1:{}{path}", self.ports.admin)).await.expect("admin endpoint")
    }

    /// Waits for the process to exit and returns its status code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.child;
        eventually(timeout, || {
            let r = child.try_wait().ok().flatten().map(|s| s.code().unwrap_or(-1));
            async move { r }
        })
        .await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of a metric family's samples whose label set contains every `name="value"` in `labels`.
pub fn metric_sum(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 keep-alive client.
pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A prior-knowledge HTTP/2 cleartext (h2c) client.
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// A response as the test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub version: http::Version,
}

/// Sends one request through `client`.
pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Reply> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned())))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned(), version })
}

/// GET over a fresh HTTP/1.1 connection: (status, body).
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let r = send(&http1_client(), "GET", url, &[], "").await?;
    Ok((r.status, r.body))
}

/// A loopback address on `port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A config body with one HTTP listener `out` on `port`, route config `main` made of `vhosts`
/// (YAML list items, indented by 6) and `clusters` (YAML list items, indented by 2).
pub fn http_config(port: u16, vhosts: &str, clusters: &str) -> String {
    format!(
        "listeners:\n  - name: out\n    address: 127.0.0.1:{port}\n    filter_chains: [{{ http: {{ route_config: main }} }}]\n\
         route_configs:\n  - name: main\n    virtual_hosts:\n{vhosts}clusters:\n{clusters}"
    )
}

/// The config of sidecar A (workload `checkout-v1`) in the invocation tests: app id `orders` is
/// routed by `orders.shop.svc.cluster.local` on the outbound listener `virtualOutbound` at
/// `outbound`, to the cluster `orders` whose endpoints are `endpoints` (a YAML flow list).
pub fn checkout_sidecar_config(outbound: u16, endpoints: &str) -> String {
    format!(
        r#"
node: {{ workload: checkout-v1, namespace: shop }}
invocation:
  listener: virtualOutbound
  apps: {{ orders: orders.shop.svc.cluster.local }}
listeners:
  - name: virtualOutbound
    address: 127.0.0.1:{outbound}
    filter_chains: [{{ http: {{ route_config: outbound }} }}]
route_configs:
  - name: outbound
    virtual_hosts:
      - name: orders
        domains: ["orders.shop.svc.cluster.local"]
        routes:
          - match: {{ prefix: "/" }}
            route: {{ cluster: orders, retry_policy: {{ retry_on: [connect-failure] }} }}
clusters:
  - {{ name: orders, service: orders.shop.svc.cluster.local, endpoints: {endpoints} }}
"#
    )
}

/// A virtual host for every domain with one route for `/` whose action is `action` (YAML flow map body).
pub fn catch_all(action: &str) -> String {
    format!("      - {{ name: all, domains: [\"*\"], routes: [{{ match: {{ prefix: \"/\" }}, route: {{ {action} }} }}] }}\n")
}

/// Closed-loop GET load from `workers` keep-alive clients until `finish`; counts 200s and the rest.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str, workers: usize) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let ok = std::sync::Arc::new(AtomicU64::new(0));
        let failed = std::sync::Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.to_string());
                tokio::spawn(async move {
                    let c = http1_client();
                    while !stop.load(Ordering::SeqCst) {
                        match send(&c, "GET", &url, &[], "").await {
                            Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                            _ => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
        Load { stop, ok, failed, tasks }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the load and returns (ok, failed).
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("load task");
        }
        (self.ok.load(std::sync::atomic::Ordering::SeqCst), self.failed.load(std::sync::atomic::Ordering::SeqCst))
    }
}
