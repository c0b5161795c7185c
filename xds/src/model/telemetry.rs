//! Telemetry settings (access log, metric labels, tracing) and the node identity Istio's standard
//! metric labels are filled from, with Istio's defaults when a field is left out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Node;

/// Distinct values one metric label may take before further values are counted as `other`.
pub const DEFAULT_MAX_LABEL_VALUES: u32 = 100;
/// Istio's default trace sampling: 1 % of new traces.
pub const DEFAULT_SAMPLING_PERCENT: f64 = 1.0;
/// How long one OTLP export may take before the batch is dropped.
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(5);
/// Istio's default cluster id and mesh id.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
pub const DEFAULT_MESH_ID: &str = "cluster.local";

/// `telemetry:` in the static config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    #[serde(default)]
    pub access_log: AccessLog,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub tracing: TracingSettings,
}

/// One line per HTTP request and per TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    #[serde(default)]
    pub format: AccessLogFormat,
    /// A file the lines are appended to; stdout when absent (or `/dev/stdout`).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// No access log (Istio's default: `meshConfig.accessLogFile` empty).
    #[default]
    Off,
    /// One JSON object per line.
    Json,
    /// One line in the spirit of Envoy's default text format.
    Text,
}

/// Which labels Istio's standard metrics carry and how many values each may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Label names left out of every `istio_*` family (e.g. `[destination_canonical_revision]`);
    /// their value is always empty, so they stop multiplying series.
    #[serde(default)]
    pub drop_labels: Vec<String>,
    /// Distinct values per label before new values become `other`.
    #[serde(default = "default_max_label_values")]
    pub max_label_values: u32,
    /// The app's own Prometheus endpoint, merged into the merged-metrics port's `/stats/prometheus`.
    #[serde(default)]
    pub app_scrape: Option<AppScrape>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { drop_labels: Vec::new(), max_label_values: DEFAULT_MAX_LABEL_VALUES, app_scrape: None }
    }
}

fn default_max_label_values() -> u32 {
    DEFAULT_MAX_LABEL_VALUES
}

/// Where the app serves its metrics (what `prometheus.io/port` and `prometheus.io/path` name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppScrape {
    pub port: u16,
    #[serde(default = "default_scrape_path")]
    pub path: String,
}

fn default_scrape_path() -> String {
    "/metrics".to_string()
}

/// Trace propagation, sampling and export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// Percent of new traces sampled (0–100); an incoming sampling decision is kept.
    #[serde(default = "default_sampling")]
    pub sampling: f64,
    /// OTLP/gRPC collector; no export when absent (headers are still propagated).
    #[serde(default)]
    pub otlp: Option<Otlp>,
    /// `service.name` of exported spans; default `<canonical service>.<namespace>`.
    #[serde(default)]
    pub service_name: Option<String>,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self { sampling: DEFAULT_SAMPLING_PERCENT, otlp: None, service_name: None }
    }
}

fn default_sampling() -> f64 {
    DEFAULT_SAMPLING_PERCENT
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Otlp {
    /// `http://host:4317` (plaintext gRPC).
    pub endpoint: String,
    #[serde(default = "default_otlp_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_otlp_timeout() -> Duration {
    DEFAULT_OTLP_TIMEOUT
}

/// Every label name of Istio's standard request metrics, in the order the proxy records them.
/// The TCP families carry the first 23 (all but `response_code` and `grpc_response_status`).
pub const ISTIO_REQUEST_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
    "response_code",
    "grpc_response_status",
];

impl Telemetry {
    /// Problems as (path, message), for the snapshot's validation.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, l) in self.metrics.drop_labels.iter().enumerate() {
            if !ISTIO_REQUEST_LABELS.contains(&l.as_str()) || l == "reporter" {
                out.push((format!("telemetry.metrics.drop_labels[{i}]"), format!("{l:?} is not a droppable Istio metric label")));
            }
        }
        if self.metrics.max_label_values == 0 {
            out.push(("telemetry.metrics.max_label_values".into(), "must be greater than 0".into()));
        }
        if let Some(s) = &self.metrics.app_scrape {
            if s.port == 0 {
                out.push(("telemetry.metrics.app_scrape.port".into(), "0 is not a port".into()));
            }
            if !s.path.starts_with('/') {
                out.push(("telemetry.metrics.app_scrape.path".into(), format!("{:?} must start with /", s.path)));
            }
        }
        let s = self.tracing.sampling;
        if !(0.0..=100.0).contains(&s) {
            out.push(("telemetry.tracing.sampling".into(), format!("{s} is not a percentage (0-100)")));
        }
        if let Some(o) = &self.tracing.otlp {
            // Collectors in a mesh listen in plaintext on 4317 (the sidecar's mTLS wraps them).
            if o.endpoint.strip_prefix("http://").is_none_or(|r| r.is_empty()) {
                out.push(("telemetry.tracing.otlp.endpoint".into(), format!("{:?} is not an http:// URL", o.endpoint)));
            }
            if o.timeout.is_zero() {
                out.push(("telemetry.tracing.otlp.timeout".into(), "must be greater than 0".into()));
            }
        }
        if let Some(p) = &self.access_log.path
            && p.as_os_str().is_empty()
        {
            out.push(("telemetry.access_log.path".into(), "must not be empty".into()));
        }
        out
    }
}

impl Node {
    fn label(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.labels.get(*k)).map(String::as_str)
    }

    /// The workload name, `unknown` when not configured.
    pub fn workload_name(&self) -> &str {
        self.workload.as_deref().unwrap_or("unknown")
    }

    pub fn namespace_name(&self) -> &str {
        self.namespace.as_deref().unwrap_or("unknown")
    }

    /// `app`: the field, else the `app` / `app.kubernetes.io/name` label, else `unknown`.
    pub fn app_name(&self) -> &str {
        self.app.as_deref().or_else(|| self.label(&["app", "app.kubernetes.io/name"])).unwrap_or("unknown")
    }

    /// `version`: the field, else the `version` / `app.kubernetes.io/version` label, else `unknown`.
    pub fn version_name(&self) -> &str {
        self.version.as_deref().or_else(|| self.label(&["version", "app.kubernetes.io/version"])).unwrap_or("unknown")
    }

    /// Istio's canonical service: the field, the `service.istio.io/canonical-name` label, the app
    /// labels, else the workload name.
    pub fn canonical_service_name(&self) -> &str {
        self.canonical_service
            .as_deref()
            .or_else(|| self.label(&["service.istio.io/canonical-name", "app.kubernetes.io/name", "app"]))
            .unwrap_or_else(|| self.workload_name())
    }

    /// Istio's canonical revision: the field, the `service.istio.io/canonical-revision` label, the
    /// version labels, else `latest`.
    pub fn canonical_revision_name(&self) -> &str {
        self.canonical_revision
            .as_deref()
            .or_else(|| self.label(&["service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"]))
            .unwrap_or("latest")
    }

    pub fn cluster_name(&self) -> &str {
        self.cluster_id.as_deref().unwrap_or(DEFAULT_CLUSTER_ID)
    }

    pub fn mesh_name(&self) -> &str {
        self.mesh_id.as_deref().unwrap_or(DEFAULT_MESH_ID)
    }

    /// Labels of the node as given (pod labels under Istio).
    pub fn all_labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Fills what the config left unset from the variables Istio's injector gives the proxy
    /// container: `ISTIO_META_WORKLOAD_NAME`, `POD_NAMESPACE`, `ISTIO_METAJSON_LABELS` (JSON),
    /// `ISTIO_META_CLUSTER_ID`, `ISTIO_META_MESH_ID`. What the config sets wins.
    pub fn with_env_defaults(mut self, get: impl Fn(&str) -> Option<String>) -> Node {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        self.workload = self.workload.or_else(|| get("ISTIO_META_WORKLOAD_NAME"));
        self.namespace = self.namespace.or_else(|| get("POD_NAMESPACE"));
        self.cluster_id = self.cluster_id.or_else(|| get("ISTIO_META_CLUSTER_ID"));
        self.mesh_id = self.mesh_id.or_else(|| get("ISTIO_META_MESH_ID"));
        if self.labels.is_empty()
            && let Some(labels) = get("ISTIO_METAJSON_LABELS").and_then(|j| serde_json::from_str::<BTreeMap<String, String>>(&j).ok())
        {
            self.labels = labels;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_defaults_follow_istio() {
        let mut n = Node { workload: Some("reviews-v2".into()), namespace: Some("shop".into()), ..Node::default() };
        assert_eq!(n.canonical_service_name(), "reviews-v2");
        assert_eq!(n.canonical_revision_name(), "latest");
        assert_eq!(n.app_name(), "unknown");
        assert_eq!(n.cluster_name(), "Kubernetes");
        assert_eq!(n.mesh_name(), "cluster.local");
        n.labels.insert("app".into(), "reviews".into());
        n.labels.insert("version".into(), "v2".into());
        assert_eq!(n.canonical_service_name(), "reviews");
        assert_eq!(n.canonical_revision_name(), "v2");
        assert_eq!((n.app_name(), n.version_name()), ("reviews", "v2"));
        n.labels.insert("service.istio.io/canonical-name".into(), "reviews-canon".into());
        n.canonical_revision = Some("r7".into());
        assert_eq!((n.canonical_service_name(), n.canonical_revision_name()), ("reviews-canon", "r7"));
    }

    #[test]
    fn istio_injector_variables_fill_what_the_config_leaves_unset() {
        let env = |k: &str| match k {
            "ISTIO_META_WORKLOAD_NAME" => Some("reviews-v1".to_string()),
            "POD_NAMESPACE" => Some("shop".to_string()),
            "ISTIO_METAJSON_LABELS" => Some(r#"{"app":"reviews","version":"v1"}"#.to_string()),
            "ISTIO_META_CLUSTER_ID" => Some("east".to_string()),
            _ => None,
        };
        let n = Node::default().with_env_defaults(env);
        assert_eq!((n.workload_name(), n.namespace_name(), n.app_name(), n.cluster_name()), ("reviews-v1", "shop", "reviews", "east"));
        assert_eq!(n.mesh_name(), "cluster.local");
        let set = Node { workload: Some("from-config".into()), ..Node::default() }.with_env_defaults(env);
        assert_eq!(set.workload_name(), "from-config", "the config wins");
    }

    #[test]
    fn bad_telemetry_settings_are_named() {
        let mut t = Telemetry::default();
        t.metrics.drop_labels = vec!["destination_app".into(), "colour".into(), "reporter".into()];
        t.metrics.max_label_values = 0;
        t.tracing.sampling = 150.0;
        t.tracing.otlp = Some(Otlp { endpoint: "collector:4317".into(), timeout: Duration::ZERO });
        let p: Vec<String> = t.problems().into_iter().map(|(a, b)| format!("{a}: {b}")).collect();
        assert_eq!(
            p,
            [
                "telemetry.metrics.drop_labels[1]: \"colour\" is not a droppable Istio metric label",
                "telemetry.metrics.drop_labels[2]: \"reporter\" is not a droppable Istio metric label",
                "telemetry.metrics.max_label_values: must be greater than 0",
                "telemetry.tracing.sampling: 150 is not a percentage (0-100)",
                "telemetry.tracing.otlp.endpoint: \"collector:4317\" is not an http:// URL",
                "telemetry.tracing.otlp.timeout: must be greater than 0",
            ]
        );
    }
}
