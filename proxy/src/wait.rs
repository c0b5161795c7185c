//! `oxidecar wait`: polls the readiness endpoint until it answers 200 or a deadline passes, so a
//! pod can hold its app container (postStart hook) until the sidecar serves traffic.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// The readiness URL (the health port's `/healthz/ready` by default).
    #[arg(long, default_value = "http://127.0.0.1:15021/healthz/ready")]
    pub url: String,
    /// Give up after this long (humantime: 500ms, 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Time between attempts.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Time one attempt may take.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

/// Exit 0 once ready; 1 when the timeout passes (naming the last answer); 2 for a bad URL.
pub fn run(args: &WaitArgs) -> ExitCode {
    let uri: http::Uri = match args.url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("oxidecar wait: --url {:?}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    if uri.scheme_str() != Some("http") {
        eprintln!("oxidecar wait: --url {:?}: only http:// URLs are supported", args.url);
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxidecar wait: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let start = Instant::now();
        let deadline = start + args.timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = match tokio::time::timeout(args.request_timeout, client.get(uri.clone())).await {
                Ok(Ok(resp)) if resp.status() == http::StatusCode::OK => {
                    println!("oxidecar wait: ready after {:?} ({attempts} attempts)", start.elapsed());
                    return ExitCode::SUCCESS;
                }
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    format!("{status} {}", String::from_utf8_lossy(&body).trim())
                }
                Ok(Err(e)) => format!("{e}"),
                Err(_) => format!("no answer within {:?}", args.request_timeout),
            };
            let now = Instant::now();
            if now >= deadline {
                eprintln!("oxidecar wait: {} not ready after {:?} ({attempts} attempts); last: {last}", args.url, args.timeout);
                return ExitCode::from(1);
            }
            tokio::time::sleep(args.period.min(deadline - now)).await;
        }
    })
}
