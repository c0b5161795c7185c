//! The merged-metrics port (15020): the proxy's own metrics followed by the app's, scraped from
//! the port and path the pod's `prometheus.io/port` / `prometheus.io/path` annotations name — as
//! pilot-agent does, read from `ISTIO_PROMETHEUS_ANNOTATIONS` (JSON `{"scrape","port","path"}`)
//! or from `telemetry.metrics.app_scrape` in the config (which wins).

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxidecar_xds::model::AppScrape;
use serde::Deserialize;

use super::AdminState;

/// How long the app may take to answer a scrape before its part is left out.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable pilot-agent reads the pod's Prometheus annotations from.
pub const ANNOTATIONS_ENV: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";

#[derive(Deserialize)]
struct Annotations {
    #[serde(default)]
    scrape: Option<String>,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

/// The app's endpoint from pilot-agent's annotations JSON; `Err` names what is wrong.
pub fn from_annotations(json: &str) -> Result<Option<AppScrape>, String> {
    let a: Annotations = serde_json::from_str(json).map_err(|e| format!("{ANNOTATIONS_ENV}: not JSON: {e}"))?;
    if a.scrape.as_deref().is_some_and(|s| s != "true") {
        return Ok(None);
    }
    let Some(port) = a.port else { return Ok(None) };
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| format!("{ANNOTATIONS_ENV}: port {port:?} is not a port"))?;
    let path = a.path.filter(|p| !p.is_empty()).unwrap_or_else(|| "/metrics".into());
    if !path.starts_with('/') {
        return Err(format!("{ANNOTATIONS_ENV}: path {path:?} must start with /"));
    }
    Ok(Some(AppScrape { port, path }))
}

/// The endpoint named by the environment, read once at start-up (a bad value is logged).
pub fn from_env() -> Option<AppScrape> {
    let json = std::env::var(ANNOTATIONS_ENV).ok()?;
    from_annotations(&json).unwrap_or_else(|e| {
        tracing::warn!("{e}; the app's metrics are not merged");
        None
    })
}

async fn scrape(target: &AppScrape) -> Result<String, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://127.0.0.1:{}{}", target.port, target.path).parse().map_err(|e| format!("{e}"))?;
    let resp = tokio::time::timeout(SCRAPE_TIMEOUT, client.get(uri)).await.map_err(|_| "timed out".to_string())?.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "not UTF-8".to_string())
}

/// `/stats/prometheus` on the merged port.
pub(super) async fn merged(State(s): State<AdminState>) -> Response {
    s.shared.metrics.active_requests.set(s.shared.drain.in_flight());
    let mut out = s.shared.metrics.render();
    let target = s.shared.tables.load().snapshot.telemetry.metrics.app_scrape.clone().or_else(|| s.app_scrape.clone());
    if let Some(target) = target {
        match scrape(&target).await {
            Ok(app) => {
                s.shared.metrics.app_scrapes.with_label_values(&["success"]).inc();
                if !out.ends_with('\n') && !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&app);
            }
            Err(e) => {
                s.shared.metrics.app_scrapes.with_label_values(&["failure"]).inc();
                tracing::debug!(port = target.port, path = %target.path, error = %e, "cannot scrape the app's metrics");
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_name_the_apps_endpoint() {
        assert_eq!(
            from_annotations(r#"{"scrape":"true","port":"9090","path":"/stats"}"#),
            Ok(Some(AppScrape { port: 9090, path: "/stats".into() }))
        );
        assert_eq!(from_annotations(r#"{"port":"9090"}"#), Ok(Some(AppScrape { port: 9090, path: "/metrics".into() })));
        assert_eq!(from_annotations(r#"{"scrape":"false","port":"9090"}"#), Ok(None));
        assert_eq!(from_annotations(r#"{"scrape":"true"}"#), Ok(None));
        assert!(from_annotations(r#"{"port":"http"}"#).is_err_and(|e| e.contains("port \"http\" is not a port")));
        assert!(from_annotations("port=1").is_err_and(|e| e.contains("not JSON")));
    }
}
