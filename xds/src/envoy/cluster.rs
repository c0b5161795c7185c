//! Cluster → [`model::Cluster`]: discovery type, load balancing, limits, outlier detection,
//! upstream protocol and Istio's mTLS (a transport socket match on `tlsMode: istio`).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{RoutingPriority, TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{UpstreamTlsContext, common_tls_context};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{HttpProtocolOptions, http_protocol_options};
use envoy_types::pb::google::protobuf as pb;

use super::common::{duration, metadata_list_first_str};
use super::reflect::{any_type, check, unpack};
use super::report::{Cx, Tr};
use crate::model::{self, ClusterKind, LbPolicy, TlsMode, UpstreamProtocol, UpstreamTls};


/// A translated cluster and where its endpoints come from.
pub(crate) struct TranslatedCluster {
    pub cluster: model::Cluster,
    /// The ClusterLoadAssignment name an EDS cluster waits for.
    pub eds_name: Option<String>,
}

#[allow(deprecated)] // Istio still sends http2_protocol_options and match_subject_alt_names.
pub(crate) fn translate(cx: &mut Cx<'_>, c: &Cluster) -> Tr<TranslatedCluster> {
    check(
        cx,
        "",
        c,
        &[
            "name", "type", "eds_cluster_config", "connect_timeout", "lb_policy", "load_assignment", "circuit_breakers",
            "outlier_detection", "typed_extension_protocol_options", "http2_protocol_options", "http_protocol_options",
            "transport_socket", "transport_socket_matches", "metadata", "original_dst_lb_config", "least_request_lb_config",
            "ring_hash_lb_config", "maglev_lb_config", "round_robin_lb_config", "dns_refresh_rate", "dns_lookup_family",
        ],
        &[
            "alt_stat_name", "per_connection_buffer_limit_bytes", "common_lb_config", "cleanup_interval", "filters",
            // The system resolver reports no TTLs: DNS clusters re-resolve every dns_refresh_rate.
            "respect_dns_ttl", "max_requests_per_connection",
            "common_http_protocol_options", "upstream_connection_options", "track_cluster_stats", "wait_for_warm_on_init",
            "close_connections_on_host_health_failure", "ignore_health_on_host_removal", "dns_jitter",
            // Istio binds inbound passthrough to 127.0.0.6 to dodge its own capture; oxidecar's
            // capture excludes its uid instead.
            "upstream_bind_config",
        ],
    )?;
    let kind = match c.cluster_discovery_type {
        None | Some(cluster::ClusterDiscoveryType::Type(0)) => ClusterKind::Static,
        Some(cluster::ClusterDiscoveryType::Type(t)) => match cluster::DiscoveryType::try_from(t) {
            Ok(cluster::DiscoveryType::Eds) => ClusterKind::Eds,
            Ok(cluster::DiscoveryType::OriginalDst) => ClusterKind::OriginalDst,
            Ok(cluster::DiscoveryType::StrictDns) => ClusterKind::StrictDns,
            Ok(cluster::DiscoveryType::LogicalDns) => ClusterKind::LogicalDns,
            _ => return Err(cx.reject("type", format!("discovery type {t} is not supported"))),
        },
        Some(cluster::ClusterDiscoveryType::ClusterType(ref ct)) => {
            return Err(cx.reject("cluster_type", format!("custom cluster type {:?} is not supported", ct.name)));
        }
    };
    let lb_policy = match cluster::LbPolicy::try_from(c.lb_policy) {
        Ok(cluster::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
        Ok(cluster::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
        Ok(cluster::LbPolicy::RingHash) => LbPolicy::RingHash,
        Ok(cluster::LbPolicy::Maglev) => LbPolicy::Maglev,
        // ORIGINAL_DST clusters carry CLUSTER_PROVIDED: the connection picks the host.
        Ok(cluster::LbPolicy::ClusterProvided) if kind == ClusterKind::OriginalDst => LbPolicy::RoundRobin,
        _ => return Err(cx.reject("lb_policy", format!("load balancing policy {} is not supported", c.lb_policy))),
    };
    if let Some(cluster::LbConfig::LeastRequestLbConfig(lr)) = &c.lb_config
        && lr.choice_count.as_ref().is_some_and(|n| n.value != 2)
    {
        return Err(cx.reject("least_request_lb_config.choice_count", "only the default of 2 choices is supported"));
    }
    let mut out = model::Cluster {
        name: c.name.clone(),
        service: metadata_list_first_str(c.metadata.as_ref(), "istio", "services", "host").or_else(|| service_from_name(&c.name)),
        kind,
        connect_timeout: c.connect_timeout.as_ref().map_or(model::DEFAULT_CONNECT_TIMEOUT, duration),
        lb_policy,
        protocol: UpstreamProtocol::Auto,
        tls: UpstreamTls::default(),
        max_connection_duration: None,
        circuit_breakers: model::CircuitBreakers::default(),
        outlier_detection: None,
        health_check: None,
        endpoints: Vec::new(),
        dns: None,
    };
    if out.connect_timeout.is_zero() {
        out.connect_timeout = model::DEFAULT_CONNECT_TIMEOUT;
    }
    if c.http2_protocol_options.is_some() {
        out.protocol = UpstreamProtocol::H2;
    } else if c.http_protocol_options.is_some() {
        out.protocol = UpstreamProtocol::Http1;
    }
    for (key, any) in &c.typed_extension_protocol_options {
        let field = format!("typed_extension_protocol_options[{key:?}]");
        match unpack::<HttpProtocolOptions>(any) {
            Some(Ok(options)) => {
                out.protocol = protocol(cx, &field, &options)?;
                out.max_connection_duration =
                    options.common_http_protocol_options.as_ref().and_then(|c| c.max_connection_duration.as_ref()).map(duration).filter(|d| !d.is_zero());
            }
            Some(Err(e)) => return Err(cx.reject(field, format!("cannot decode: {e}"))),
            None => return Err(cx.reject(field, format!("{} is not supported", any_type(any)))),
        }
    }
    if let Some(cb) = &c.circuit_breakers {
        check(cx, "circuit_breakers", cb, &["thresholds"], &["per_host_thresholds"])?;
        for (i, t) in cb.thresholds.iter().enumerate() {
            let path = format!("circuit_breakers.thresholds[{i}]");
            check(cx, &path, t, &["priority", "max_connections", "max_pending_requests", "max_requests", "max_retries"], &["track_remaining", "max_connection_pools"])?;
            if t.priority != RoutingPriority::Default as i32 {
                // Only DEFAULT-priority routes exist here; HIGH-priority limits never apply.
                cx.ignore("Thresholds.priority=HIGH");
                continue;
            }
            let v = |w: &Option<pb::UInt32Value>, d: u32| w.as_ref().map_or(d, |w| w.value);
            let d = model::CircuitBreakers::default();
            out.circuit_breakers = model::CircuitBreakers {
                max_connections: v(&t.max_connections, d.max_connections),
                max_pending_requests: v(&t.max_pending_requests, d.max_pending_requests),
                max_requests: v(&t.max_requests, d.max_requests),
                max_retries: v(&t.max_retries, d.max_retries),
            };
            for (field, value) in [
                ("max_connections", out.circuit_breakers.max_connections),
                ("max_pending_requests", out.circuit_breakers.max_pending_requests),
                ("max_requests", out.circuit_breakers.max_requests),
            ] {
                if value == 0 {
                    return Err(cx.reject(format!("{path}.{field}"), "0 would refuse every request"));
                }
            }
        }
    }
    if let Some(od) = &c.outlier_detection {
        check(
            cx,
            "outlier_detection",
            od,
            &["consecutive_5xx", "consecutive_gateway_failure", "base_ejection_time", "max_ejection_percent"],
            &[
                "interval", "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure", "enforcing_success_rate",
                "split_external_local_origin_errors", "consecutive_local_origin_failure", "max_ejection_time",
            ],
        )?;
        let d = model::OutlierDetection { consecutive_5xx: 5, consecutive_gateway_errors: 5, base_ejection_time: std::time::Duration::from_secs(30), max_ejection_percent: 10 };
        // Envoy counts gateway failures only when explicitly enforced; Istio disables the 5xx
        // counter (enforcing 0) when consecutiveGatewayErrors alone is set.
        let enforce_5xx = od.enforcing_consecutive_5xx.as_ref().is_none_or(|e| e.value > 0);
        out.outlier_detection = Some(model::OutlierDetection {
            consecutive_5xx: if enforce_5xx { od.consecutive_5xx.as_ref().map_or(d.consecutive_5xx, |v| v.value) } else { u32::MAX },
            consecutive_gateway_errors: od.consecutive_gateway_failure.as_ref().map_or(d.consecutive_gateway_errors, |v| v.value),
            base_ejection_time: od.base_ejection_time.as_ref().map_or(d.base_ejection_time, duration),
            max_ejection_percent: od.max_ejection_percent.as_ref().map_or(d.max_ejection_percent, |v| v.value).min(100),
        });
        if out.outlier_detection.as_ref().is_some_and(|o| o.base_ejection_time.is_zero()) {
            return Err(cx.reject("outlier_detection.base_ejection_time", "must be greater than 0"));
        }
    }
    match (&c.transport_socket, c.transport_socket_matches.is_empty()) {
        (Some(ts), _) => out.tls = transport(cx, "transport_socket", ts, BTreeMap::new())?.unwrap_or_default(),
        (None, false) => {
            // Istio: first `tlsMode: istio` → mTLS, then a catch-all raw buffer. Anything else is refused.
            for (i, m) in c.transport_socket_matches.iter().enumerate() {
                let path = format!("transport_socket_matches[{i}]");
                let labels: BTreeMap<String, String> = super::common::metadata_struct_strings(m.r#match.as_ref());
                let Some(ts) = &m.transport_socket else { continue };
                match transport(cx, &format!("{path}.transport_socket"), ts, labels.clone())? {
                    Some(tls) if out.tls.mode == TlsMode::Disabled => out.tls = tls,
                    Some(_) => return Err(cx.reject(path, "only one TLS transport socket match is supported")),
                    None if labels.is_empty() => {}
                    None => return Err(cx.reject(format!("{path}.match"), "a plaintext match before the catch-all is not supported")),
                }
            }
        }
        (None, true) => {}
    }
    let eds_name = (kind == ClusterKind::Eds).then(|| {
        c.eds_cluster_config.as_ref().map(|e| e.service_name.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| c.name.clone())
    });
    if let Some(la) = &c.load_assignment {
        if kind == ClusterKind::OriginalDst {
            cx.ignore("Cluster.load_assignment(original_dst)");
        } else if kind.is_dns() {
            let hosts = super::endpoint::dns_hosts(cx, "load_assignment", la)?;
            out.dns = Some(dns(cx, c, kind, hosts)?);
        } else {
            out.endpoints = super::endpoint::endpoints(cx, "load_assignment", la)?;
        }
    }
    if kind == ClusterKind::Static && out.endpoints.is_empty() {
        // Istio's BlackHoleCluster: no endpoint, so every request is refused and every connection closed.
        out.kind = ClusterKind::Blackhole;
    }
    Ok(TranslatedCluster { cluster: out, eds_name })
}

/// A DNS cluster's resolution settings. Envoy's LOGICAL_DNS takes exactly one host.
#[allow(deprecated)] // Istio still sends dns_refresh_rate.
fn dns(cx: &mut Cx<'_>, c: &Cluster, kind: ClusterKind, hosts: Vec<model::DnsHost>) -> Tr<model::Dns> {
    if hosts.is_empty() {
        return Err(cx.reject("load_assignment", "a DNS cluster needs at least one endpoint to resolve"));
    }
    if kind == ClusterKind::LogicalDns && hosts.len() > 1 {
        return Err(cx.reject("load_assignment", "a LOGICAL_DNS cluster resolves exactly one endpoint"));
    }
    use cluster::DnsLookupFamily as F;
    let lookup_family = match F::try_from(c.dns_lookup_family) {
        Ok(F::Auto) => model::LookupFamily::Auto,
        Ok(F::V4Only) => model::LookupFamily::V4Only,
        Ok(F::V6Only) => model::LookupFamily::V6Only,
        Ok(F::V4Preferred) => model::LookupFamily::V4Preferred,
        Ok(F::All) => model::LookupFamily::All,
        Err(_) => return Err(cx.reject("dns_lookup_family", format!("{} is not a lookup family", c.dns_lookup_family))),
    };
    let refresh_rate = c.dns_refresh_rate.as_ref().map(duration).filter(|d| !d.is_zero()).unwrap_or(model::DEFAULT_DNS_REFRESH_RATE);
    Ok(model::Dns { hosts, refresh_rate, lookup_family })
}

/// `outbound|9080|v1|reviews.default.svc.cluster.local` → the host part.
fn service_from_name(name: &str) -> Option<String> {
    let mut parts = name.split('|');
    let (dir, _, _, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    matches!(dir, "outbound" | "inbound").then(|| host.to_string()).filter(|h| !h.is_empty())
}

fn protocol(cx: &mut Cx<'_>, field: &str, o: &HttpProtocolOptions) -> Tr<UpstreamProtocol> {
    check(cx, field, o, &["explicit_http_config", "use_downstream_protocol_config", "auto_config"], &["common_http_protocol_options", "upstream_http_protocol_options"])?;
    use http_protocol_options::{UpstreamProtocolOptions as U, explicit_http_config::ProtocolConfig as P};
    Ok(match &o.upstream_protocol_options {
        Some(U::ExplicitHttpConfig(e)) => match e.protocol_config {
            Some(P::Http2ProtocolOptions(_)) => UpstreamProtocol::H2,
            Some(P::HttpProtocolOptions(_)) | None => UpstreamProtocol::Http1,
            Some(P::Http3ProtocolOptions(_)) => return Err(cx.reject(format!("{field}.explicit_http_config"), "HTTP/3 upstreams are not supported")),
        },
        Some(U::UseDownstreamProtocolConfig(_)) | None => UpstreamProtocol::Auto,
        Some(U::AutoConfig(_)) => return Err(cx.reject(format!("{field}.auto_config"), "ALPN-negotiated upstream protocol is not supported")),
    })
}

/// A transport socket: raw buffer → `None`; Istio's SDS-backed UpstreamTlsContext → mTLS.
#[allow(deprecated)]
fn transport(cx: &mut Cx<'_>, field: &str, ts: &TransportSocket, endpoint_match: BTreeMap<String, String>) -> Tr<Option<UpstreamTls>> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else { return Ok(None) };
    let ty = any_type(any);
    if ty == "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" {
        return Ok(None);
    }
    let Some(Ok(tls)) = unpack::<UpstreamTlsContext>(any) else {
        return Err(cx.reject(format!("{field}.typed_config"), format!("transport socket {ty} is not supported")));
    };
    check(cx, field, &tls, &["common_tls_context", "sni"], &[])?;
    let common = tls.common_tls_context.unwrap_or_default();
    let ctx_field = format!("{field}.common_tls_context");
    check(cx, &ctx_field, &common, &["tls_certificate_sds_secret_configs", "combined_validation_context", "alpn_protocols", "validation_context_sds_secret_config"], &["tls_params"])?;
    if !common.tls_certificate_sds_secret_configs.iter().any(|s| s.name == "default") {
        return Err(cx.reject(format!("{ctx_field}.tls_certificate_sds_secret_configs"), "only the SDS workload certificate `default` is supported"));
    }
    let mut subject_alt_names = Vec::new();
    match &common.validation_context_type {
        Some(common_tls_context::ValidationContextType::CombinedValidationContext(c)) => {
            if let Some(v) = &c.default_validation_context {
                for (i, m) in v.match_subject_alt_names.iter().enumerate() {
                    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
                    match &m.match_pattern {
                        Some(MatchPattern::Exact(s)) => subject_alt_names.push(s.clone()),
                        _ => return Err(cx.reject(format!("{ctx_field}.combined_validation_context.default_validation_context.match_subject_alt_names[{i}]"), "only exact SAN matches are supported")),
                    }
                }
            }
        }
        Some(common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(_)) => {}
        _ => return Err(cx.reject(ctx_field, "needs the SDS trust bundle (ROOTCA) as validation context")),
    }
    Ok(Some(UpstreamTls {
        mode: TlsMode::IstioMutual,
        sni: Some(tls.sni).filter(|s| !s.is_empty()),
        subject_alt_names,
        alpn: common.alpn_protocols,
        endpoint_match,
    }))
}
