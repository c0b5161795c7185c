//! The static YAML config file: parse → defaults (serde) → `validate()`.
//!
//! Errors read `FILE: PATH: PROBLEM`, e.g.
//! `mesh.yaml: clusters[2].endpoints[0].address: 127.0.0.1:0: 0 is not a port`.

use std::path::{Path, PathBuf};

use crate::model::{ConfigError, Snapshot};

/// Why a config file was refused. Lists every problem that could be found.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{}", render(.file, .errors))]
    Invalid { file: PathBuf, errors: Vec<ConfigError> },
}

impl LoadError {
    /// The individual problems, each with its path (one for I/O errors).
    pub fn problems(&self) -> Vec<String> {
        match self {
            LoadError::Read { .. } => vec![self.to_string()],
            LoadError::Invalid { file, errors } => {
                errors.iter().map(|e| format!("{}: {e}", file.display())).collect()
            }
        }
    }
}

fn render(file: &Path, errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("{}: {e}", file.display())).collect();
    lines.join("\n")
}

/// Reads, parses and validates a static config file.
pub fn load_file(file: &Path) -> Result<Snapshot, LoadError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| LoadError::Read { file: file.to_path_buf(), source })?;
    parse_str(&text).map_err(|errors| LoadError::Invalid { file: file.to_path_buf(), errors })
}

/// Parses and validates config text; errors carry paths but no file name.
pub fn parse_str(text: &str) -> Result<Snapshot, Vec<ConfigError>> {
    let de = serde_norway::Deserializer::from_str(text);
    let snapshot: Snapshot = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(top level)".to_string() } else { path };
        let message = e.into_inner().to_string();
        // serde_norway prefixes its own (shorter) path; ours is more precise, keep only one.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_string(),
            _ => message,
        };
        vec![ConfigError { path, message }]
    })?;
    snapshot.validate().map_err(|e| e.0)?;
    if snapshot.identity.is_none() {
        // Without a control plane the certificates can only come from files.
        let mut errors = Vec::new();
        for (i, cl) in snapshot.clusters.iter().enumerate() {
            if cl.tls.mode == crate::model::TlsMode::IstioMutual {
                errors.push(ConfigError { path: format!("clusters[{i}].tls"), message: "istio_mutual needs `identity` (cert_chain, private_key, trust_bundle)".into() });
            }
        }
        for (i, l) in snapshot.listeners.iter().enumerate() {
            for (j, fc) in l.filter_chains.iter().enumerate() {
                if fc.tls.is_some() {
                    errors.push(ConfigError { path: format!("listeners[{i}].filter_chains[{j}].tls"), message: "terminating TLS needs `identity` (cert_chain, private_key, trust_bundle)".into() });
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    const GOOD: &str = r#"
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    filter_chains:
      - match: { destination_port: 9080 }
        http: { route_config: main }
      - tcp: { cluster: db }
route_configs:
  - name: main
    virtual_hosts:
      - name: reviews
        domains: ["reviews", "reviews:9080"]
        routes:
          - match: { prefix: "/", headers: [{ name: x-lane, exact: v2 }] }
            route: { cluster: reviews-v2, timeout: 3s }
          - match: { prefix: "/" }
            route:
              weighted_clusters: [{ name: reviews-v2, weight: 20 }, { name: db, weight: 80 }]
              retry_policy: { retry_on: [connect-failure] }
clusters:
  - name: reviews-v2
    lb_policy: least_request
    endpoints: [{ address: 127.0.0.1:9081, labels: { version: v2 } }]
  - name: db
    connect_timeout: 250ms
    endpoints: [{ address: 127.0.0.1:5432, weight: 3 }]
"#;

    #[test]
    fn parses_a_full_config_with_defaults() {
        let s = parse_str(GOOD).expect("valid");
        assert_eq!(s.listeners[0].direction, TrafficDirection::Outbound);
        assert_eq!(s.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
        let db = s.cluster("db").expect("db");
        assert_eq!(db.connect_timeout, std::time::Duration::from_millis(250));
        assert_eq!(db.endpoints[0].weight, 3);
        assert_eq!(db.circuit_breakers.max_requests, DEFAULT_CIRCUIT_BREAKER_LIMIT);
        let route = &s.route_configs[0].virtual_hosts[0].routes[1];
        assert_eq!(route.route.as_ref().and_then(|a| a.retry_policy.as_ref()).map(|r| r.num_retries), Some(DEFAULT_NUM_RETRIES));
        assert_eq!(s.admin.address.port(), 15000);
    }

    #[test]
    fn parse_errors_name_the_path() {
        let bad = GOOD.replace("connect_timeout: 250ms", "connect_timeout: soon");
        let errs = parse_str(&bad).expect_err("bad duration");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "clusters[1].connect_timeout");
        let unknown = GOOD.replace("lb_policy: least_request", "lb_polcy: least_request");
        let errs = parse_str(&unknown).expect_err("unknown field");
        assert_eq!(errs[0].path, "clusters[0].lb_polcy");
        assert!(errs[0].message.contains("lb_polcy"), "{}", errs[0].message);
    }

    #[test]
    fn validation_reports_every_problem_with_path_and_value() {
        let bad = GOOD
            .replace("127.0.0.1:5432", "127.0.0.1:0")
            .replace("cluster: db", "cluster: nosuch")
            .replace("exact: v2", "regex: \"(\"");
        let errs = parse_str(&bad).expect_err("invalid");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"clusters[1].endpoints[0].address: 127.0.0.1:0: 0 is not a port".to_string()), "{text:#?}");
        assert!(text.contains(&"listeners[0].filter_chains[1].tcp.cluster: unknown cluster \"nosuch\"".to_string()), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("route_configs[0].virtual_hosts[0].routes[0].match.headers[0].regex: invalid regex \"(\"")), "{text:#?}");
        assert_eq!(errs.len(), 3, "{text:#?}");
    }

    #[test]
    fn load_file_prefixes_the_file_name() {
        let dir = std::env::temp_dir().join(format!("oxidecar-xds-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("mesh.yaml");
        std::fs::write(&file, GOOD.replace("weight: 3", "weight: 0")).expect("write");
        let err = load_file(&file).expect_err("invalid");
        assert_eq!(err.problems(), vec![format!("{}: clusters[1].endpoints[0].weight: must be at least 1", file.display())]);
        let missing = load_file(&dir.join("absent.yaml")).expect_err("missing");
        assert!(missing.to_string().contains("absent.yaml: cannot read"), "{missing}");
    }

    #[test]
    fn rejects_duplicate_names_and_wrong_route_shapes() {
        let bad = GOOD.replace("name: db\n", "name: reviews-v2\n");
        let errs = parse_str(&bad).expect_err("dup");
        assert!(errs.iter().any(|e| e.to_string() == "clusters[1].name: duplicate name \"reviews-v2\""), "{errs:?}");
        let bad = GOOD.replace("{ prefix: \"/\" }", "{ prefix: \"/\", path: /x }");
        let errs = parse_str(&bad).expect_err("two kinds");
        assert!(errs.iter().any(|e| e.path == "route_configs[0].virtual_hosts[0].routes[1].match"), "{errs:?}");
    }

    const MTLS: &str = r#"
identity: { cert_chain: /certs/cert-chain.pem, private_key: /certs/key.pem, trust_bundle: /certs/root-cert.pem }
listeners:
  - name: inbound
    address: 127.0.0.1:15006
    direction: inbound
    filter_chains:
      - match: { transport_protocol: tls, application_protocols: [istio-peer-exchange, istio] }
        tls: {}
        tcp: { cluster: app }
      - match: { transport_protocol: raw_buffer }
        tcp: { cluster: app }
clusters:
  - name: app
    endpoints: [{ address: 127.0.0.1:8080 }]
  - name: reviews
    tls:
      mode: istio_mutual
      sni: outbound_.9080_._.reviews.default.svc.cluster.local
      subject_alt_names: [spiffe://cluster.local/ns/default/sa/reviews]
      endpoint_match: { tlsMode: istio }
    endpoints:
      - { address: 10.0.0.1:9080, labels: { tlsMode: istio } }
      - { address: 10.0.0.2:9080 }
  - name: short
    tls: istio_mutual
    endpoints: [{ address: 10.0.0.3:9080 }]
"#;

    #[test]
    fn parses_mtls_settings_in_both_forms() {
        let s = parse_str(MTLS).expect("valid");
        let chain = &s.listeners[0].filter_chains[0];
        assert_eq!(chain.filter_chain_match.transport_protocol, Some(TransportProtocol::Tls));
        assert!(chain.tls.as_ref().is_some_and(|t| t.require_client_certificate), "mutual by default");
        let reviews = s.cluster("reviews").expect("reviews");
        assert_eq!(reviews.tls.mode, TlsMode::IstioMutual);
        assert!(reviews.tls.applies_to(&reviews.endpoints[0].labels));
        assert!(!reviews.tls.applies_to(&reviews.endpoints[1].labels), "unlabelled endpoint stays plaintext");
        let short = s.cluster("short").expect("short");
        assert!(short.tls.applies_to(&short.endpoints[0].labels));
        assert_eq!(s.cluster("app").map(|c| c.tls.mode), Some(TlsMode::Disabled));
    }

    #[test]
    fn rejects_bad_mtls_settings_by_path() {
        let errs = parse_str(&MTLS.replace("spiffe://cluster.local/ns/default/sa/reviews", "reviews")).expect_err("bad san");
        assert_eq!(errs[0].to_string(), "clusters[1].tls.subject_alt_names[0]: \"reviews\" is not a SPIFFE ID (spiffe://TRUST_DOMAIN/...)");
        let errs = parse_str(&MTLS.replace("match: { transport_protocol: raw_buffer }", "match: { transport_protocol: raw_buffer }\n        tls: {}")).expect_err("tls on raw");
        assert_eq!(errs[0].path, "listeners[0].filter_chains[1].tls");
        let no_identity = MTLS.lines().skip(2).collect::<Vec<_>>().join("\n");
        let errs = parse_str(&no_identity).expect_err("no identity");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["clusters[1].tls", "clusters[2].tls", "listeners[0].filter_chains[0].tls"]);
        let errs = parse_str(&MTLS.replace("tls: istio_mutual", "tls: mutual")).expect_err("bad mode");
        assert_eq!(errs[0].path, "clusters[2].tls");
    }

    #[test]
    fn passthrough_and_blackhole_clusters_take_no_endpoints() {
        let ok = "clusters:\n  - { name: PassthroughCluster, type: original_dst }\n  - { name: InboundPassthroughCluster, type: original_dst_loopback }\n  - { name: BlackHoleCluster, type: blackhole }\n";
        let s = parse_str(ok).expect("valid");
        let kinds: Vec<ClusterKind> = s.clusters.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ClusterKind::OriginalDst, ClusterKind::OriginalDstLoopback, ClusterKind::Blackhole]);
        assert!(kinds[0].is_original_dst() && kinds[1].is_original_dst() && !kinds[2].is_original_dst());
        let (v4, v6): (std::net::SocketAddr, std::net::SocketAddr) = ("10.1.2.3:8080".parse().expect("v4"), "[fd00::7]:9090".parse().expect("v6"));
        assert_eq!(kinds[0].passthrough_address(v4), v4);
        assert_eq!(kinds[1].passthrough_address(v4).to_string(), "127.0.0.1:8080");
        assert_eq!(kinds[1].passthrough_address(v6).to_string(), "[::1]:9090");
        let bad = "clusters:\n  - { name: in, type: original_dst_loopback, endpoints: [{ address: 127.0.0.1:80 }] }\n  - { name: bh, type: blackhole, health_check: {}, endpoints: [{ address: 127.0.0.1:81 }] }\n";
        let text: Vec<String> = parse_str(bad).expect_err("endpoints given").iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "clusters[0].endpoints: an original_dst cluster takes its endpoint from each connection; remove the list",
                "clusters[1].endpoints: a blackhole cluster refuses every connection; remove the list",
                "clusters[1].health_check: only a static cluster has endpoints to check",
            ]
        );
    }

    #[test]
    fn prefix_ranges_are_cidrs() {
        let ok = GOOD.replace("match: { destination_port: 9080 }", "match: { destination_port: 9080, prefix_ranges: [\"10.0.0.0/8\", \"fd00::/64\"] }");
        let s = parse_str(&ok).expect("valid");
        assert_eq!(s.listeners[0].filter_chains[0].filter_chain_match.prefix_ranges.len(), 2);
        let bad = GOOD.replace("match: { destination_port: 9080 }", "match: { prefix_ranges: [\"10.0.0.0/33\"] }");
        let errs = parse_str(&bad).expect_err("bad cidr");
        assert!(errs[0].path.starts_with("listeners[0].filter_chains[0].match.prefix_ranges"), "{errs:?}");
    }
}
