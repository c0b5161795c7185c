//! oxidecar's model → Envoy v3 resources, for the config dump of a proxy configured by a static
//! file: what Envoy would have been sent to behave the same way, in the shape the translator
//! reads back (so the dump round-trips through `oxidecar validate --envoy-config-dump`).
//!
//! Approximations (also in docs/OPERATIONS.md): active health checks are left out (the
//! translator does not take Envoy's), `original_dst_loopback` clusters are written as ORIGINAL_DST,
//! chains matched on a sniffed opaque-TCP protocol lose that condition, and inline route configs
//! appear as RDS route configs of their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster, OutlierDetection, circuit_breakers, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, CidrRange, ConfigSource, HeaderValue, HeaderValueOption, HttpProtocolOptions as CommonHttpOptions, Metadata,
    SocketAddress, TrafficDirection, TransportSocket, address, config_source, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, header_matcher, route, route_action,
    route_match, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, UpstreamTlsContext, common_tls_context,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{HttpProtocolOptions, http_protocol_options};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{self as pb, Any, Struct, value};
use prost::{Message, Name};

use super::super::ResourceSet;
use crate::model::{self, ClusterKind, LbPolicy, Snapshot, TlsMode, TrafficDirection as Direction, TransportProtocol, UpstreamProtocol};

fn pack<M: Message + Name>(m: &M) -> Any {
    Any { type_url: M::type_url(), value: m.encode_to_vec() }
}

fn duration(d: Duration) -> pb::Duration {
    pb::Duration { seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0) }
}

fn u32v(v: u32) -> Option<pb::UInt32Value> {
    Some(pb::UInt32Value { value: v })
}

fn string(s: &str) -> pb::Value {
    pb::Value { kind: Some(value::Kind::StringValue(s.to_string())) }
}

fn socket(a: SocketAddr) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(a.port()))),
            ..Default::default()
        })),
    })
}

fn ads() -> Option<ConfigSource> {
    Some(ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    })
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig { name: name.to_string(), sds_config: ads() }
}

/// Envoy resources for everything in `snapshot` (its secrets are the caller's to add).
pub fn resources_from_snapshot(snapshot: &Snapshot) -> ResourceSet {
    let mut set = ResourceSet::default();
    for c in &snapshot.clusters {
        let (cluster, cla) = cluster(c);
        if let Some(cla) = cla {
            set.endpoints.insert(cla.cluster_name.clone(), Arc::new(cla));
        }
        set.clusters.insert(c.name.clone(), Arc::new(cluster));
    }
    for rc in &snapshot.route_configs {
        set.routes.insert(rc.name.clone(), Arc::new(route_config(rc)));
    }
    for l in &snapshot.listeners {
        set.listeners.insert(l.name.clone(), Arc::new(listener(l)));
    }
    set
}

fn load_assignment(name: &str, endpoints: &[model::Endpoint]) -> ClusterLoadAssignment {
    let lb_endpoints = endpoints
        .iter()
        .map(|e| {
            // Istio keeps `tlsMode` where the transport socket match looks; other labels go where
            // Envoy's subset load balancer looks.
            let (tls, lb): (Vec<_>, Vec<_>) = e.labels.iter().partition(|(k, _)| k.as_str() == "tlsMode");
            let mut filter_metadata = BTreeMap::new();
            for (ns, pairs) in [("envoy.transport_socket_match", tls), ("envoy.lb", lb)] {
                if !pairs.is_empty() {
                    filter_metadata.insert(ns.to_string(), Struct { fields: pairs.into_iter().map(|(k, v)| (k.clone(), string(v))).collect() });
                }
            }
            LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint { address: socket(e.address), ..Default::default() })),
                load_balancing_weight: u32v(e.weight),
                metadata: (!filter_metadata.is_empty()).then(|| Metadata { filter_metadata: filter_metadata.into_iter().collect(), ..Default::default() }),
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment { cluster_name: name.to_string(), endpoints: vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }], ..Default::default() }
}

fn cluster(c: &model::Cluster) -> (Cluster, Option<ClusterLoadAssignment>) {
    use cluster::{ClusterDiscoveryType, DiscoveryType};
    let mut out = Cluster { name: c.name.clone(), connect_timeout: Some(duration(c.connect_timeout)), ..Default::default() };
    let mut cla = None;
    let discovery = match c.kind {
        ClusterKind::Static | ClusterKind::Blackhole => {
            out.load_assignment = Some(load_assignment(&c.name, &c.endpoints));
            DiscoveryType::Static
        }
        ClusterKind::Eds => {
            out.eds_cluster_config = Some(cluster::EdsClusterConfig { eds_config: ads(), service_name: c.name.clone() });
            cla = Some(load_assignment(&c.name, &c.endpoints));
            DiscoveryType::Eds
        }
        ClusterKind::OriginalDst | ClusterKind::OriginalDstLoopback => DiscoveryType::OriginalDst,
        ClusterKind::StrictDns | ClusterKind::LogicalDns => super::answer::dns_cluster(c, &mut out),
    };
    out.cluster_discovery_type = Some(ClusterDiscoveryType::Type(discovery as i32));
    out.lb_policy = match (c.kind.is_original_dst(), c.lb_policy) {
        (true, _) => cluster::LbPolicy::ClusterProvided,
        (false, LbPolicy::RoundRobin) => cluster::LbPolicy::RoundRobin,
        (false, LbPolicy::LeastRequest) => cluster::LbPolicy::LeastRequest,
        (false, LbPolicy::RingHash) => cluster::LbPolicy::RingHash,
        (false, LbPolicy::Maglev) => cluster::LbPolicy::Maglev,
    } as i32;
    let cb = &c.circuit_breakers;
    out.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            max_connections: u32v(cb.max_connections),
            max_pending_requests: u32v(cb.max_pending_requests),
            max_requests: u32v(cb.max_requests),
            max_retries: u32v(cb.max_retries),
            ..Default::default()
        }],
        ..Default::default()
    });
    if let Some(od) = &c.outlier_detection {
        let five_xx_off = od.consecutive_5xx == u32::MAX;
        out.outlier_detection = Some(OutlierDetection {
            consecutive_5xx: (!five_xx_off).then(|| pb::UInt32Value { value: od.consecutive_5xx }),
            enforcing_consecutive_5xx: five_xx_off.then(|| pb::UInt32Value { value: 0 }),
            consecutive_gateway_failure: u32v(od.consecutive_gateway_errors),
            enforcing_consecutive_gateway_failure: u32v(100),
            base_ejection_time: Some(duration(od.base_ejection_time)),
            max_ejection_percent: u32v(od.max_ejection_percent),
            ..Default::default()
        });
    }
    use http_protocol_options::{ExplicitHttpConfig, UpstreamProtocolOptions as U, UseDownstreamHttpConfig, explicit_http_config::ProtocolConfig as P};
    let upstream = match c.protocol {
        UpstreamProtocol::H2 => U::ExplicitHttpConfig(ExplicitHttpConfig { protocol_config: Some(P::Http2ProtocolOptions(Default::default())) }),
        UpstreamProtocol::Http1 => U::ExplicitHttpConfig(ExplicitHttpConfig { protocol_config: Some(P::HttpProtocolOptions(Default::default())) }),
        UpstreamProtocol::Auto => U::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
            http_protocol_options: Some(Default::default()),
            http2_protocol_options: Some(Default::default()),
            ..Default::default()
        }),
    };
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(upstream),
        common_http_protocol_options: c.max_connection_duration.map(|d| CommonHttpOptions { max_connection_duration: Some(duration(d)), ..Default::default() }),
        ..Default::default()
    };
    out.typed_extension_protocol_options.insert(HttpProtocolOptions::full_name(), pack(&options));
    if c.tls.mode == TlsMode::IstioMutual {
        let tls = upstream_tls(&c.tls);
        if c.tls.endpoint_match.is_empty() {
            out.transport_socket = Some(tls);
        } else {
            let fields = c.tls.endpoint_match.iter().map(|(k, v)| (k.clone(), string(v))).collect();
            let raw = TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                    type_url: "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer".into(),
                    value: Vec::new(),
                })),
            };
            out.transport_socket_matches = vec![
                cluster::TransportSocketMatch { name: "tlsMode-istio".into(), r#match: Some(Struct { fields }), transport_socket: Some(tls) },
                cluster::TransportSocketMatch { name: "tlsMode-disabled".into(), r#match: Some(Struct::default()), transport_socket: Some(raw) },
            ];
        }
    }
    if let Some(service) = &c.service {
        let entry = Struct { fields: [("host".to_string(), string(service))].into_iter().collect() };
        let services = pb::Value { kind: Some(value::Kind::ListValue(pb::ListValue { values: vec![pb::Value { kind: Some(value::Kind::StructValue(entry)) }] })) };
        out.metadata =
            Some(Metadata { filter_metadata: [("istio".to_string(), Struct { fields: [("services".to_string(), services)].into_iter().collect() })].into_iter().collect(), ..Default::default() });
    }
    (out, cla)
}

fn common_tls(alpn: &[String], sans: &[String]) -> CommonTlsContext {
    #[allow(deprecated)] // Istio still writes match_subject_alt_names.
    let default_validation_context = CertificateValidationContext {
        match_subject_alt_names: sans
            .iter()
            .map(|s| StringMatcher { match_pattern: Some(string_matcher::MatchPattern::Exact(s.clone())), ..Default::default() })
            .collect(),
        ..Default::default()
    };
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds("default")],
        validation_context_type: Some(common_tls_context::ValidationContextType::CombinedValidationContext(common_tls_context::CombinedCertificateValidationContext {
            default_validation_context: Some(default_validation_context),
            validation_context_sds_secret_config: Some(sds("ROOTCA")),
            ..Default::default()
        })),
        alpn_protocols: alpn.to_vec(),
        ..Default::default()
    }
}

fn upstream_tls(t: &model::UpstreamTls) -> TransportSocket {
    let ctx = UpstreamTlsContext { common_tls_context: Some(common_tls(&t.alpn, &t.subject_alt_names)), sni: t.sni.clone().unwrap_or_default(), ..Default::default() };
    TransportSocket { name: "envoy.transport_sockets.tls".into(), config_type: Some(transport_socket::ConfigType::TypedConfig(pack(&ctx))) }
}

fn listener(l: &model::Listener) -> Listener {
    Listener {
        name: l.name.clone(),
        address: socket(l.address),
        traffic_direction: match l.direction {
            Direction::Outbound => TrafficDirection::Outbound,
            Direction::Inbound => TrafficDirection::Inbound,
        } as i32,
        listener_filters_timeout: Some(duration(l.protocol_sniff_timeout)),
        filter_chains: l.filter_chains.iter().map(chain).collect(),
        ..Default::default()
    }
}

fn chain(fc: &model::FilterChain) -> FilterChain {
    let m = &fc.filter_chain_match;
    let mut application_protocols = m.application_protocols.clone();
    if m.protocol == Some(model::Protocol::Http) && m.transport_protocol != Some(TransportProtocol::Tls) && application_protocols.is_empty() {
        // What http_inspector reports for plaintext HTTP.
        application_protocols = vec!["http/1.1".into(), "h2c".into()];
    }
    let filter_chain_match = FilterChainMatch {
        destination_port: m.destination_port.and_then(|p| u32v(u32::from(p))),
        prefix_ranges: m.prefix_ranges.iter().map(|n| CidrRange { address_prefix: n.addr().to_string(), prefix_len: u32v(u32::from(n.prefix_len())) }).collect(),
        server_names: m.server_names.clone(),
        transport_protocol: match m.transport_protocol {
            Some(TransportProtocol::Tls) => "tls".into(),
            Some(TransportProtocol::RawBuffer) => "raw_buffer".into(),
            None => String::new(),
        },
        application_protocols,
        ..Default::default()
    };
    let network = if let Some(h) = &fc.http {
        let router = HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(Any { type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router".into(), value: Vec::new() })),
            ..Default::default()
        };
        let hcm = HttpConnectionManager {
            stat_prefix: h.route_config.clone(),
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds { config_source: ads(), route_config_name: h.route_config.clone() })),
            http_filters: vec![router],
            ..Default::default()
        };
        Filter { name: "envoy.filters.network.http_connection_manager".into(), config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))) }
    } else {
        let t = fc.tcp.clone().unwrap_or(model::TcpProxy { cluster: None, weighted_clusters: Vec::new() });
        let specifier = match &t.cluster {
            Some(c) => tcp_proxy::ClusterSpecifier::Cluster(c.clone()),
            None => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
                clusters: t.weighted_clusters.iter().map(|w| tcp_proxy::weighted_cluster::ClusterWeight { name: w.name.clone(), weight: w.weight, ..Default::default() }).collect(),
            }),
        };
        let tcp = TcpProxy { stat_prefix: t.cluster.clone().unwrap_or_default(), cluster_specifier: Some(specifier), ..Default::default() };
        Filter { name: "envoy.filters.network.tcp_proxy".into(), config_type: Some(filter::ConfigType::TypedConfig(pack(&tcp))) }
    };
    let transport_socket = fc.tls.as_ref().map(|t| {
        let ctx = DownstreamTlsContext {
            common_tls_context: Some(common_tls(&t.alpn, &[])),
            require_client_certificate: Some(pb::BoolValue { value: t.require_client_certificate }),
            ..Default::default()
        };
        TransportSocket { name: "envoy.transport_sockets.tls".into(), config_type: Some(transport_socket::ConfigType::TypedConfig(pack(&ctx))) }
    });
    FilterChain { name: fc.name.clone().unwrap_or_default(), filter_chain_match: Some(filter_chain_match), filters: vec![network], transport_socket, ..Default::default() }
}

fn headers(list: &[model::HeaderValue]) -> Vec<HeaderValueOption> {
    list.iter().map(|h| HeaderValueOption { header: Some(HeaderValue { key: h.name.clone(), value: h.value.clone(), ..Default::default() }), ..Default::default() }).collect()
}

fn route_config(rc: &model::RouteConfig) -> RouteConfiguration {
    RouteConfiguration {
        name: rc.name.clone(),
        virtual_hosts: rc
            .virtual_hosts
            .iter()
            .map(|vh| VirtualHost { name: vh.name.clone(), domains: vh.domains.clone(), routes: vh.routes.iter().map(route).collect(), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher { regex: r.to_string(), ..Default::default() }
}

fn route(r: &model::Route) -> Route {
    let m = &r.route_match;
    let path_specifier = if let Some(p) = &m.path {
        route_match::PathSpecifier::Path(p.clone())
    } else if let Some(re) = &m.regex {
        route_match::PathSpecifier::SafeRegex(regex(re))
    } else {
        route_match::PathSpecifier::Prefix(m.prefix.clone().unwrap_or_else(|| "/".into()))
    };
    let header_matchers = m
        .headers
        .iter()
        .map(|h| {
            use header_matcher::HeaderMatchSpecifier as S;
            let pattern = |p: string_matcher::MatchPattern| S::StringMatch(StringMatcher { match_pattern: Some(p), ..Default::default() });
            let specifier = if let Some(v) = &h.exact {
                pattern(string_matcher::MatchPattern::Exact(v.clone()))
            } else if let Some(v) = &h.prefix {
                pattern(string_matcher::MatchPattern::Prefix(v.clone()))
            } else if let Some(v) = &h.regex {
                pattern(string_matcher::MatchPattern::SafeRegex(regex(v)))
            } else {
                S::PresentMatch(h.present.unwrap_or(true))
            };
            HeaderMatcher { name: h.name.clone(), invert_match: h.invert, header_match_specifier: Some(specifier), ..Default::default() }
        })
        .collect();
    let action = match (&r.route, &r.redirect, &r.direct_response) {
        (_, Some(rd), _) => route::Action::Redirect(super::answer::redirect(rd)),
        (_, _, Some(d)) => route::Action::DirectResponse(super::answer::direct_response(d)),
        (a, _, _) => route::Action::Route(forward(a.as_ref().cloned().unwrap_or_default())),
    };
    Route {
        name: r.name.clone().unwrap_or_default(),
        r#match: Some(RouteMatch { path_specifier: Some(path_specifier), headers: header_matchers, ..Default::default() }),
        action: Some(action),
        request_headers_to_add: headers(&r.request_headers_to_add),
        request_headers_to_remove: r.request_headers_to_remove.clone(),
        response_headers_to_add: headers(&r.response_headers_to_add),
        response_headers_to_remove: r.response_headers_to_remove.clone(),
        ..Default::default()
    }
}

fn forward(a: model::RouteAction) -> RouteAction {
    let cluster_specifier = match &a.cluster {
        Some(c) => route_action::ClusterSpecifier::Cluster(c.clone()),
        None => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: a.weighted_clusters.iter().map(|w| weighted_cluster::ClusterWeight { name: w.name.clone(), weight: u32v(w.weight), ..Default::default() }).collect(),
            ..Default::default()
        }),
    };
    let retry_policy = a.retry_policy.as_ref().map(|rp| RetryPolicy {
        retry_on: rp.retry_on.iter().map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()).collect::<Vec<_>>().join(","),
        num_retries: u32v(rp.num_retries),
        per_try_timeout: rp.per_try_timeout.map(duration),
        retriable_status_codes: rp.retriable_status_codes.iter().map(|s| u32::from(*s)).collect(),
        retry_back_off: Some(envoy_types::pb::envoy::config::route::v3::retry_policy::RetryBackOff { base_interval: Some(duration(rp.base_interval)), ..Default::default() }),
        ..Default::default()
    });
    let hash_policy = a
        .hash_policy
        .iter()
        .map(|h| {
            use route_action::hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier as P};
            let specifier = if let Some(name) = &h.header {
                P::Header(Header { header_name: name.clone(), ..Default::default() })
            } else if let Some(name) = &h.cookie {
                P::Cookie(Cookie { name: name.clone(), ..Default::default() })
            } else {
                P::ConnectionProperties(ConnectionProperties { source_ip: true })
            };
            route_action::HashPolicy { policy_specifier: Some(specifier), ..Default::default() }
        })
        .collect();
    // Envoy's default route timeout is 15 s; oxidecar's is none, which Envoy writes as 0s.
    let timeout = Some(duration(a.timeout.unwrap_or_default()));
    let request_mirror_policies = a.mirrors.iter().map(super::answer::mirror).collect();
    RouteAction { cluster_specifier: Some(cluster_specifier), timeout, retry_policy, hash_policy, request_mirror_policies, ..Default::default() }
}
