//! Listener → [`model::Listener`]: address, direction, filter chains with their matches, TLS
//! termination, and the network filters of each chain.

use envoy_types::pb::envoy::config::core::v3::{TrafficDirection, transport_socket};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener, listener_filter};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

use super::common::socket_addr;
use super::http::{ChainKind, filters};
use super::reflect::{any_type, check, unpack};
use super::report::{Cx, Tr};
use crate::model::{self, Protocol, TransportProtocol};

/// Listener filters whose work oxidecar's listener does itself (original destination, TLS and
/// HTTP sniffing).
const BUILT_IN_LISTENER_FILTERS: [&str; 3] =
    ["envoy.filters.listener.original_dst", "envoy.filters.listener.tls_inspector", "envoy.filters.listener.http_inspector"];

/// HTTP application protocols `http_inspector` reports on plaintext connections.
const PLAIN_HTTP_ALPN: [&str; 4] = ["http/1.0", "http/1.1", "h2c", "h2"];

pub(crate) struct TranslatedListener {
    pub listener: model::Listener,
    /// Envoy's `bind_to_port: false`: reached only through a `use_original_dst` listener.
    pub bind_to_port: bool,
    pub use_original_dst: bool,
    /// Route configs given inline in an http_connection_manager.
    pub inline_routes: Vec<model::RouteConfig>,
}

pub(crate) fn translate(cx: &mut Cx<'_>, l: &Listener) -> Tr<TranslatedListener> {
    check(
        cx,
        "",
        l,
        &["name", "address", "filter_chains", "use_original_dst", "listener_filters", "traffic_direction", "bind_to_port", "default_filter_chain"],
        &[
            "access_log", "stat_prefix", "listener_filters_timeout", "continue_on_listener_filters_timeout", "metadata",
            "per_connection_buffer_limit_bytes", "socket_options", "transparent", "freebind", "reuse_port", "enable_reuse_port",
            "tcp_backlog_size", "drain_type",
        ],
    )?;
    let address = socket_addr(cx, "address", l.address.as_ref())?;
    for (i, lf) in l.listener_filters.iter().enumerate() {
        let ty = match &lf.config_type {
            Some(listener_filter::ConfigType::TypedConfig(any)) => any_type(any),
            _ => String::new(),
        };
        if !BUILT_IN_LISTENER_FILTERS.contains(&lf.name.as_str()) {
            return Err(cx.reject(format!("listener_filters[{i}]"), format!("listener filter {:?} ({ty}) is not supported", lf.name)));
        }
    }
    let direction = match TrafficDirection::try_from(l.traffic_direction) {
        Ok(TrafficDirection::Inbound) => model::TrafficDirection::Inbound,
        Ok(TrafficDirection::Outbound) => model::TrafficDirection::Outbound,
        _ if l.name.contains("nbound") && !l.name.contains("utbound") => model::TrafficDirection::Inbound,
        _ => model::TrafficDirection::Outbound,
    };
    let mut chains = Vec::new();
    let mut inline_routes = Vec::new();
    let all = l.filter_chains.iter().enumerate().map(|(i, fc)| (format!("filter_chains[{i}]"), i, fc));
    let default = l.default_filter_chain.iter().map(|fc| ("default_filter_chain".to_string(), l.filter_chains.len(), fc));
    for (path, index, fc) in all.chain(default) {
        let (chain, inline) = chain(cx, &path, &l.name, index, fc)?;
        chains.push(chain);
        inline_routes.extend(inline);
    }
    sort_by_specificity(&mut chains);
    Ok(TranslatedListener {
        listener: model::Listener {
            name: l.name.clone(),
            address,
            direction,
            protocol_sniff_timeout: l.listener_filters_timeout.as_ref().map(super::common::duration).filter(|d| !d.is_zero()).unwrap_or(model::DEFAULT_PROTOCOL_SNIFF_TIMEOUT),
            filter_chains: chains,
        },
        bind_to_port: l.bind_to_port.as_ref().is_none_or(|b| b.value),
        use_original_dst: l.use_original_dst.as_ref().is_some_and(|b| b.value),
        inline_routes,
    })
}

fn chain(cx: &mut Cx<'_>, path: &str, listener: &str, index: usize, fc: &FilterChain) -> Tr<(model::FilterChain, Option<model::RouteConfig>)> {
    check(cx, path, fc, &["filter_chain_match", "filters", "transport_socket", "name"], &["metadata", "transport_socket_connect_timeout"])?;
    let m = chain_match(cx, &format!("{path}.filter_chain_match"), fc.filter_chain_match.as_ref())?;
    let tls = match &fc.transport_socket {
        Some(ts) => downstream_tls(cx, &format!("{path}.transport_socket"), ts)?,
        None => None,
    };
    let kind = filters(cx, path, listener, index, &fc.filters)?;
    let (http, tcp, inline) = match kind {
        ChainKind::Http { hcm, inline } => (Some(hcm), None, inline),
        ChainKind::Tcp(t) => (None, Some(t), None),
    };
    Ok((model::FilterChain { name: Some(fc.name.clone()).filter(|n| !n.is_empty()), filter_chain_match: m, http, tcp, tls }, inline))
}

fn chain_match(cx: &mut Cx<'_>, path: &str, m: Option<&FilterChainMatch>) -> Tr<model::FilterChainMatch> {
    let mut out = model::FilterChainMatch::default();
    let Some(m) = m else { return Ok(out) };
    check(
        cx,
        path,
        m,
        &["destination_port", "prefix_ranges", "source_prefix_ranges", "server_names", "transport_protocol", "application_protocols", "source_type"],
        &[],
    )?;
    if m.source_type != 0 {
        return Err(cx.reject(format!("{path}.source_type"), "matching on the source type is not supported"));
    }
    if let Some(p) = &m.destination_port {
        out.destination_port = Some(u16::try_from(p.value).ok().filter(|p| *p != 0).ok_or_else(|| cx.reject(format!("{path}.destination_port"), format!("{} is not a port", p.value)))?);
    }
    for (i, r) in m.prefix_ranges.iter().enumerate() {
        let len = r.prefix_len.as_ref().map_or(if r.address_prefix.contains(':') { 128 } else { 32 }, |l| l.value);
        let net = format!("{}/{len}", r.address_prefix)
            .parse::<ipnet::IpNet>()
            .map_err(|e| cx.reject(format!("{path}.prefix_ranges[{i}]"), format!("{:?}/{len}: {e}", r.address_prefix)))?;
        out.prefix_ranges.push(net.trunc());
    }
    if !m.source_prefix_ranges.is_empty() {
        return Err(cx.reject(format!("{path}.source_prefix_ranges"), "matching on the source address is not supported"));
    }
    out.server_names = m.server_names.clone();
    out.transport_protocol = match m.transport_protocol.as_str() {
        "" => None,
        "raw_buffer" => Some(TransportProtocol::RawBuffer),
        "tls" => Some(TransportProtocol::Tls),
        other => return Err(cx.reject(format!("{path}.transport_protocol"), format!("{other:?} is not raw_buffer or tls"))),
    };
    let plain = out.transport_protocol != Some(TransportProtocol::Tls);
    if plain && !m.application_protocols.is_empty() && m.application_protocols.iter().all(|p| PLAIN_HTTP_ALPN.contains(&p.as_str())) {
        // http_inspector's verdict on a plaintext connection = oxidecar's HTTP sniff.
        out.protocol = Some(Protocol::Http);
    } else {
        out.application_protocols = m.application_protocols.clone();
    }
    Ok(out)
}

fn downstream_tls(cx: &mut Cx<'_>, path: &str, ts: &envoy_types::pb::envoy::config::core::v3::TransportSocket) -> Tr<Option<model::DownstreamTls>> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else { return Ok(None) };
    let ty = any_type(any);
    if ty == "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" {
        return Ok(None);
    }
    let Some(Ok(tls)) = unpack::<DownstreamTlsContext>(any) else {
        return Err(cx.reject(format!("{path}.typed_config"), format!("transport socket {ty} is not supported")));
    };
    let at = format!("{path}.typed_config");
    check(cx, &at, &tls, &["common_tls_context", "require_client_certificate"], &["disable_stateful_session_resumption", "session_timeout"])?;
    let common = tls.common_tls_context.unwrap_or_default();
    check(
        cx,
        &format!("{at}.common_tls_context"),
        &common,
        &["tls_certificate_sds_secret_configs", "combined_validation_context", "validation_context_sds_secret_config", "alpn_protocols"],
        &["tls_params"],
    )?;
    if !common.tls_certificate_sds_secret_configs.iter().any(|s| s.name == "default") {
        return Err(cx.reject(format!("{at}.common_tls_context.tls_certificate_sds_secret_configs"), "only the SDS workload certificate `default` is supported"));
    }
    Ok(Some(model::DownstreamTls {
        require_client_certificate: tls.require_client_certificate.as_ref().is_some_and(|b| b.value),
        alpn: common.alpn_protocols,
    }))
}

/// Envoy picks the most specific chain (port, then destination IP, server name, transport,
/// application protocols, source); oxidecar takes the first that fits, so order them that way.
pub(crate) fn sort_by_specificity(chains: &mut [model::FilterChain]) {
    chains.sort_by_key(|c| {
        let m = &c.filter_chain_match;
        let longest = m.prefix_ranges.iter().map(|r| i32::from(r.prefix_len())).max().unwrap_or(-1);
        std::cmp::Reverse((
            m.destination_port.is_some(),
            longest,
            !m.server_names.is_empty(),
            m.transport_protocol.is_some(),
            !m.application_protocols.is_empty() || m.protocol.is_some(),
        ))
    });
}
