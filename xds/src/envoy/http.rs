//! Network filters of a filter chain: http_connection_manager (RDS or an inline route config)
//! and tcp_proxy (one cluster or weighted clusters); Istio's telemetry filters are tolerated.

use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};

use super::reflect::{any_type, check, unpack};
use super::report::{Cx, Tr};
use crate::model;

/// Filters that only observe (stats, peer metadata, ALPN hints): skipped, counted.
const HARMLESS_NETWORK: [&str; 5] = ["istio.metadata_exchange", "istio.stats", "istio_authn", "envoy.filters.network.peer_metadata", "envoy.filters.network.connection_limit_stats"];
const HARMLESS_HTTP: [&str; 9] = [
    "istio.metadata_exchange", "istio.alpn", "istio.stats", "envoy.filters.http.grpc_stats", "istio.peer_metadata",
    "envoy.filters.http.peer_metadata", "envoy.filters.http.wasm", "istio_authn", "istio.filters.http.istio_authn",
];
const HARMLESS_TYPES: [&str; 6] = [
    "stats.PluginConfig", "envoy.tcp.metadataexchange.config.MetadataExchange", "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
    "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", "io.istio.http.peer_metadata.Config", "envoy.extensions.filters.http.wasm.v3.Wasm",
];

/// What a chain's filters do.
pub(crate) enum ChainKind {
    Http { hcm: model::HttpConnectionManager, inline: Option<model::RouteConfig> },
    Tcp(model::TcpProxy),
}

pub(crate) fn filters(cx: &mut Cx<'_>, path: &str, listener: &str, chain_index: usize, list: &[Filter]) -> Tr<ChainKind> {
    let mut result = None;
    for (i, f) in list.iter().enumerate() {
        let at = format!("{path}.filters[{i}]");
        check(cx, &at, f, &["name", "typed_config"], &[])?;
        let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            return Err(cx.reject(at, format!("filter {:?} has no typed_config", f.name)));
        };
        let ty = any_type(any);
        if let Some(Ok(hcm)) = unpack::<HttpConnectionManager>(any) {
            result = Some(http(cx, &format!("{at}.typed_config"), listener, chain_index, &hcm)?);
            break;
        }
        if let Some(Ok(tcp)) = unpack::<TcpProxy>(any) {
            result = Some(ChainKind::Tcp(tcp_proxy(cx, &format!("{at}.typed_config"), &tcp)?));
            break;
        }
        if HARMLESS_NETWORK.contains(&f.name.as_str()) || HARMLESS_TYPES.contains(&ty.as_str()) {
            cx.ignore(&format!("network_filter:{}", f.name));
            continue;
        }
        return Err(cx.reject(at, format!("network filter {:?} ({ty}) is not supported", f.name)));
    }
    result.ok_or_else(|| cx.reject(format!("{path}.filters"), "needs an http_connection_manager or a tcp_proxy"))
}

fn http(cx: &mut Cx<'_>, path: &str, listener: &str, chain_index: usize, hcm: &HttpConnectionManager) -> Tr<ChainKind> {
    check(
        cx,
        path,
        hcm,
        &["rds", "route_config", "http_filters", "codec_type"],
        &[
            "stat_prefix", "tracing", "access_log", "use_remote_address", "forward_client_cert_details",
            "set_current_client_cert_details", "upgrade_configs", "stream_idle_timeout", "normalize_path",
            "path_with_escaped_slashes_action", "request_id_extension", "server_name", "generate_request_id",
            "preserve_external_request_id", "http_protocol_options", "http2_protocol_options", "common_http_protocol_options",
            "internal_address_config", "delayed_close_timeout", "merge_slashes", "xff_num_trusted_hops", "skip_xff_append",
            "add_user_agent", "server_header_transformation", "access_log_options", "always_set_request_id_in_response",
        ],
    )?;
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let at = format!("{path}.http_filters[{i}]");
        let ty = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => any_type(any),
            _ => String::new(),
        };
        match f.name.as_str() {
            "envoy.filters.http.router" => {}
            // Istio installs fault and CORS filters everywhere; they act only through per-route
            // config, which oxidecar refuses where it appears.
            "envoy.filters.http.fault" | "envoy.filters.http.cors" => {
                use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
                if let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type
                    && let Some(Ok(fault)) = unpack::<HttpFault>(any)
                    && (fault.delay.is_some() || fault.abort.is_some())
                {
                    return Err(cx.reject(at, "listener-wide fault injection is not supported"));
                }
                cx.ignore(&format!("http_filter:{}", f.name));
            }
            name if HARMLESS_HTTP.contains(&name) || HARMLESS_TYPES.contains(&ty.as_str()) || f.is_optional || f.disabled => {
                cx.ignore(&format!("http_filter:{}", f.name));
            }
            name => return Err(cx.reject(at, format!("HTTP filter {name:?} ({ty}) is not supported"))),
        }
    }
    use http_connection_manager::{CodecType, RouteSpecifier as R};
    if matches!(CodecType::try_from(hcm.codec_type), Ok(CodecType::Http3)) {
        return Err(cx.reject(format!("{path}.codec_type"), "HTTP/3 is not supported"));
    }
    match &hcm.route_specifier {
        Some(R::Rds(rds)) => Ok(ChainKind::Http { hcm: model::HttpConnectionManager { route_config: rds.route_config_name.clone() }, inline: None }),
        Some(R::RouteConfig(rc)) => {
            let mut rc_cx = Cx { kind: cx.kind, name: cx.name, ignored: cx.ignored };
            let mut route_config = super::route::translate(&mut rc_cx, rc).map_err(|mut r| {
                r.field = format!("{path}.route_config.{}", r.field);
                r
            })?;
            // Inline configs get a name that cannot clash with RDS names.
            route_config.name = format!("{listener}#{chain_index}/{}", rc.name);
            Ok(ChainKind::Http { hcm: model::HttpConnectionManager { route_config: route_config.name.clone() }, inline: Some(route_config) })
        }
        _ => Err(cx.reject(path, "needs `rds` or `route_config`")),
    }
}

fn tcp_proxy(cx: &mut Cx<'_>, path: &str, t: &TcpProxy) -> Tr<model::TcpProxy> {
    check(
        cx,
        path,
        t,
        &["cluster", "weighted_clusters"],
        &["stat_prefix", "access_log", "idle_timeout", "max_connect_attempts", "access_log_options"],
    )?;
    Ok(match &t.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => model::TcpProxy { cluster: Some(c.clone()), weighted_clusters: Vec::new() },
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
            let mut out = Vec::new();
            for (i, cw) in w.clusters.iter().enumerate() {
                check(cx, &format!("{path}.weighted_clusters.clusters[{i}]"), cw, &["name", "weight"], &[])?;
                out.push(model::WeightedCluster { name: cw.name.clone(), weight: cw.weight });
            }
            if out.iter().map(|w| u64::from(w.weight)).sum::<u64>() == 0 {
                return Err(cx.reject(format!("{path}.weighted_clusters"), "weights must add up to more than 0"));
            }
            model::TcpProxy { cluster: None, weighted_clusters: out }
        }
        _ => return Err(cx.reject(path, "needs `cluster` or `weighted_clusters`")),
    })
}
