//! Route actions beyond forwarding: RedirectAction and DirectResponseAction (answered by the proxy
//! itself) → [`model::Redirect`] / [`model::DirectResponse`], and RequestMirrorPolicy →
//! [`model::Mirror`].

use envoy_types::pb::envoy::config::core::v3::data_source;
use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
use envoy_types::pb::envoy::config::route::v3::{DirectResponseAction, RedirectAction, redirect_action};
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;

use super::reflect::check;
use super::report::{Cx, Tr};
use crate::model;

pub(crate) fn redirect(cx: &mut Cx<'_>, path: &str, rd: &RedirectAction, m: &model::RouteMatch) -> Tr<model::Redirect> {
    check(
        cx,
        path,
        rd,
        &[
            "host_redirect", "port_redirect", "response_code", "strip_query", "https_redirect", "scheme_redirect", "path_redirect",
            "prefix_rewrite", "regex_rewrite",
        ],
        &[],
    )?;
    use redirect_action::{PathRewriteSpecifier as P, RedirectResponseCode as C, SchemeRewriteSpecifier as S};
    let mut out = model::Redirect { host: Some(rd.host_redirect.clone()).filter(|h| !h.is_empty()), ..Default::default() };
    out.scheme = match &rd.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::SchemeRedirect(s)) if matches!(s.to_ascii_lowercase().as_str(), "http" | "https") => Some(s.to_ascii_lowercase()),
        Some(S::SchemeRedirect(s)) => return Err(cx.reject(format!("{path}.scheme_redirect"), format!("{s:?}: only http and https are supported"))),
        Some(S::HttpsRedirect(false)) | None => None,
    };
    if rd.port_redirect != 0 {
        out.port = Some(u16::try_from(rd.port_redirect).map_err(|_| cx.reject(format!("{path}.port_redirect"), format!("{} is not a port", rd.port_redirect)))?);
    }
    match &rd.path_rewrite_specifier {
        Some(P::PathRedirect(p)) => out.path = Some(p.clone()),
        Some(P::PrefixRewrite(p)) => {
            if m.regex.is_some() {
                return Err(cx.reject(format!("{path}.prefix_rewrite"), "needs a prefix or path match (the route matches a regex)"));
            }
            out.prefix_rewrite = Some(p.clone());
        }
        Some(P::RegexRewrite(rr)) => {
            let pattern = rr.pattern.as_ref().map(|p| p.regex.clone()).unwrap_or_default();
            if let Err(e) = regex::Regex::new(&pattern) {
                return Err(cx.reject(format!("{path}.regex_rewrite.pattern"), format!("invalid regex {pattern:?}: {e}")));
            }
            out.regex_rewrite = Some(model::RegexRewrite { pattern, substitution: rr.substitution.clone() });
        }
        Some(P::PathRewrite(_)) => return Err(cx.reject(format!("{path}.path_rewrite"), "URI-template path rewrites are not supported")),
        None => {}
    }
    out.response_code = match C::try_from(rd.response_code) {
        Ok(C::MovedPermanently) => 301,
        Ok(C::Found) => 302,
        Ok(C::SeeOther) => 303,
        Ok(C::TemporaryRedirect) => 307,
        Ok(C::PermanentRedirect) => 308,
        Err(_) => return Err(cx.reject(format!("{path}.response_code"), format!("{} is not a redirect response code", rd.response_code))),
    };
    out.strip_query = rd.strip_query;
    Ok(out)
}

pub(crate) fn direct_response(cx: &mut Cx<'_>, path: &str, d: &DirectResponseAction) -> Tr<model::DirectResponse> {
    check(cx, path, d, &["status", "body"], &[])?;
    let status = u16::try_from(d.status).ok().filter(|s| (200..=599).contains(s));
    let Some(status) = status else { return Err(cx.reject(format!("{path}.status"), format!("{} is not an HTTP status (200-599)", d.status))) };
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => None,
        Some(data_source::Specifier::InlineString(s)) => Some(s.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => match String::from_utf8(b.clone()) {
            Ok(s) => Some(s),
            Err(_) => return Err(cx.reject(format!("{path}.body.inline_bytes"), "a body that is not UTF-8 text is not supported")),
        },
        Some(data_source::Specifier::Filename(f)) => {
            return Err(cx.reject(format!("{path}.body.filename"), format!("a body read from a file ({f:?}) is not supported; inline it with inline_string")));
        }
        Some(data_source::Specifier::EnvironmentVariable(v)) => {
            return Err(cx.reject(format!("{path}.body.environment_variable"), format!("a body from the environment ({v:?}) is not supported; inline it with inline_string")));
        }
    };
    Ok(model::DirectResponse { status, body })
}

pub(crate) fn mirror(cx: &mut Cx<'_>, path: &str, mp: &RequestMirrorPolicy) -> Tr<model::Mirror> {
    // A sampled trace is mirrored like any other request: the copy's trace flag is not forced.
    check(cx, path, mp, &["cluster", "runtime_fraction"], &["trace_sampled"])?;
    if mp.cluster.is_empty() {
        return Err(cx.reject(format!("{path}.cluster"), "needs a cluster"));
    }
    let mut percent = 100.0;
    if let Some(rf) = &mp.runtime_fraction {
        check(cx, &format!("{path}.runtime_fraction"), rf, &["default_value"], &["runtime_key"])?;
        let fp = rf.default_value.unwrap_or_default();
        let denominator = match DenominatorType::try_from(fp.denominator) {
            Ok(DenominatorType::Hundred) => 100.0,
            Ok(DenominatorType::TenThousand) => 10_000.0,
            Ok(DenominatorType::Million) => 1_000_000.0,
            Err(_) => return Err(cx.reject(format!("{path}.runtime_fraction.default_value.denominator"), format!("{} is not a denominator", fp.denominator))),
        };
        percent = (f64::from(fp.numerator) * 100.0 / denominator).min(100.0);
    }
    Ok(model::Mirror { cluster: mp.cluster.clone(), percent })
}
