//! The model's redirects, direct responses, mirrors and DNS clusters → Envoy v3, the inverse of
//! `envoy::answer` and the DNS part of `envoy::cluster`, for the static config's Envoy dump. A DNS
//! host's labels are left out of the dump.

use envoy_types::pb::envoy::config::cluster::v3::cluster;
use envoy_types::pb::envoy::config::core::v3::{Address, DataSource, RuntimeFractionalPercent, SocketAddress, address, data_source, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint};
use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
use envoy_types::pb::envoy::config::route::v3::{DirectResponseAction, RedirectAction, redirect_action};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf as pb;

use crate::model;

pub(super) fn redirect(r: &model::Redirect) -> RedirectAction {
    use redirect_action::{PathRewriteSpecifier as P, RedirectResponseCode as C, SchemeRewriteSpecifier as S};
    let response_code = match r.response_code {
        302 => C::Found,
        303 => C::SeeOther,
        307 => C::TemporaryRedirect,
        308 => C::PermanentRedirect,
        _ => C::MovedPermanently,
    };
    let path = if let Some(p) = &r.path {
        Some(P::PathRedirect(p.clone()))
    } else if let Some(p) = &r.prefix_rewrite {
        Some(P::PrefixRewrite(p.clone()))
    } else {
        r.regex_rewrite.as_ref().map(|rr| {
            P::RegexRewrite(RegexMatchAndSubstitute {
                pattern: Some(RegexMatcher { regex: rr.pattern.clone(), ..Default::default() }),
                substitution: rr.substitution.clone(),
            })
        })
    };
    RedirectAction {
        host_redirect: r.host.clone().unwrap_or_default(),
        port_redirect: r.port.map_or(0, u32::from),
        response_code: response_code as i32,
        strip_query: r.strip_query,
        scheme_rewrite_specifier: r.scheme.clone().map(S::SchemeRedirect),
        path_rewrite_specifier: path,
    }
}

pub(super) fn direct_response(d: &model::DirectResponse) -> DirectResponseAction {
    DirectResponseAction {
        status: u32::from(d.status),
        body: d.body.clone().map(|b| DataSource { specifier: Some(data_source::Specifier::InlineString(b)), ..Default::default() }),
        ..Default::default()
    }
}

pub(super) fn mirror(m: &model::Mirror) -> RequestMirrorPolicy {
    // Parts per million keep four decimals of the percentage.
    let numerator = (m.percent * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32;
    RequestMirrorPolicy {
        cluster: m.cluster.clone(),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent { numerator, denominator: fractional_percent::DenominatorType::Million as i32 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A DNS cluster's discovery type, settings and names to resolve.
pub(super) fn dns_cluster(c: &model::Cluster, out: &mut envoy_types::pb::envoy::config::cluster::v3::Cluster) -> cluster::DiscoveryType {
    let Some(dns) = &c.dns else { return cluster::DiscoveryType::StrictDns };
    #[allow(deprecated)] // the field Istio still sends, and the one the translator reads
    {
        out.dns_refresh_rate = Some(pb::Duration { seconds: dns.refresh_rate.as_secs() as i64, nanos: dns.refresh_rate.subsec_nanos() as i32 });
    }
    out.dns_lookup_family = match dns.lookup_family {
        model::LookupFamily::Auto => cluster::DnsLookupFamily::Auto,
        model::LookupFamily::V4Preferred => cluster::DnsLookupFamily::V4Preferred,
        model::LookupFamily::V4Only => cluster::DnsLookupFamily::V4Only,
        model::LookupFamily::V6Only => cluster::DnsLookupFamily::V6Only,
        model::LookupFamily::All => cluster::DnsLookupFamily::All,
    } as i32;
    let lb_endpoints = dns
        .hosts
        .iter()
        .map(|h| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: h.host.clone(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(h.port))),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            load_balancing_weight: Some(pb::UInt32Value { value: h.weight }),
            ..Default::default()
        })
        .collect();
    out.load_assignment =
        Some(ClusterLoadAssignment { cluster_name: c.name.clone(), endpoints: vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }], ..Default::default() });
    if c.kind == model::ClusterKind::LogicalDns { cluster::DiscoveryType::LogicalDns } else { cluster::DiscoveryType::StrictDns }
}
