//! Small conversions shared by the resource translators.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, address, socket_address};
use envoy_types::pb::google::protobuf::{self as pb, value};

use super::report::{Cx, Tr};

pub(crate) fn duration(d: &pb::Duration) -> Duration {
    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
}

/// A socket address's host (IP literal or DNS name) and port; a pipe or named port is refused
/// naming `field`.
pub(crate) fn host_port(cx: &Cx<'_>, field: &str, a: Option<&Address>) -> Tr<(String, u16)> {
    let Some(address::Address::SocketAddress(sa)) = a.and_then(|a| a.address.as_ref()) else {
        return Err(cx.reject(field, "only socket addresses are supported (no pipes or internal addresses)"));
    };
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p).map_err(|_| cx.reject(field, format!("{p} is not a port")))?,
        _ => return Err(cx.reject(field, "named ports are not supported")),
    };
    Ok((sa.address.clone(), port))
}

/// A host and port that must be an IP literal (endpoints of every cluster type but DNS ones).
pub(crate) fn ip_addr(cx: &Cx<'_>, field: &str, host: &str, port: u16) -> Tr<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| cx.reject(field, format!("{host:?} is not an IP address (only STRICT_DNS and LOGICAL_DNS clusters resolve names)")))?;
    Ok(SocketAddr::new(ip, port))
}

/// A socket address with an IP literal; a hostname or a pipe is refused naming `field`.
pub(crate) fn socket_addr(cx: &Cx<'_>, field: &str, a: Option<&Address>) -> Tr<SocketAddr> {
    let (host, port) = host_port(cx, field, a)?;
    ip_addr(cx, field, &host, port)
}

/// A string at `filter_metadata[ns].key`.
pub(crate) fn metadata_str<'a>(m: Option<&'a Metadata>, ns: &str, key: &str) -> Option<&'a str> {
    let v = m?.filter_metadata.get(ns)?.fields.get(key)?;
    match v.kind.as_ref()? {
        value::Kind::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Every string entry of `filter_metadata[ns]`.
pub(crate) fn metadata_strings(m: Option<&Metadata>, ns: &str) -> Vec<(String, String)> {
    let Some(s) = m.and_then(|m| m.filter_metadata.get(ns)) else { return Vec::new() };
    s.fields
        .iter()
        .filter_map(|(k, v)| match v.kind.as_ref()? {
            value::Kind::StringValue(s) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// A struct value as a list of fields of a nested struct list (Istio's `services` metadata).
pub(crate) fn metadata_list_first_str(m: Option<&Metadata>, ns: &str, list: &str, key: &str) -> Option<String> {
    let v = m?.filter_metadata.get(ns)?.fields.get(list)?;
    let value::Kind::ListValue(l) = v.kind.as_ref()? else { return None };
    let value::Kind::StructValue(s) = l.values.first()?.kind.as_ref()? else { return None };
    match s.fields.get(key)?.kind.as_ref()? {
        value::Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// The string fields of a plain Struct (a transport socket match's `match`).
pub(crate) fn metadata_struct_strings(s: Option<&pb::Struct>) -> std::collections::BTreeMap<String, String> {
    let Some(s) = s else { return Default::default() };
    s.fields
        .iter()
        .filter_map(|(k, v)| match v.kind.as_ref()? {
            value::Kind::StringValue(s) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
}
