//! Redirects answered by the proxy: the `location` built from the request's URL with the route's
//! replacements (scheme, host, port, path, matched prefix or regex rewrite, query).

use oxidecar_xds::model;
use regex::Regex;

/// A compiled [`model::Redirect`].
#[derive(Debug)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: PathRewrite,
    strip_query: bool,
}

#[derive(Debug)]
enum PathRewrite {
    Keep,
    Replace(String),
    /// Replace the first `len` bytes of the path (what the route's prefix or path matched).
    Prefix { len: usize, with: String },
    Regex { pattern: Regex, substitution: String },
}

/// Envoy writes capture groups as `\1`; the regex crate as `${1}`, with `$` special.
fn substitution(envoy: &str) -> String {
    let mut out = String::with_capacity(envoy.len() + 4);
    let mut chars = envoy.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            '\\' if chars.peek() == Some(&'\\') => {
                chars.next();
                out.push('\\');
            }
            c => out.push(c),
        }
    }
    out
}

impl Redirect {
    /// Compiles `r` for a route whose match is `m` (its prefix or path is what `prefix_rewrite` replaces).
    pub fn new(r: &model::Redirect, m: &model::RouteMatch) -> Result<Self, String> {
        let path = match (&r.path, &r.prefix_rewrite, &r.regex_rewrite) {
            (None, None, None) => PathRewrite::Keep,
            (Some(p), None, None) => PathRewrite::Replace(p.clone()),
            (None, Some(with), None) => {
                let len = m.prefix.as_deref().or(m.path.as_deref()).map(str::len).ok_or("prefix_rewrite needs a prefix or path match")?;
                PathRewrite::Prefix { len, with: with.clone() }
            }
            (None, None, Some(rr)) => PathRewrite::Regex {
                pattern: Regex::new(&rr.pattern).map_err(|e| format!("regex {:?}: {e}", rr.pattern))?,
                substitution: substitution(&rr.substitution),
            },
            _ => return Err("at most one of path, prefix_rewrite and regex_rewrite".to_string()),
        };
        Ok(Self { status: r.response_code, scheme: r.scheme.clone(), host: r.host.clone(), port: r.port, path, strip_query: r.strip_query })
    }

    /// The `location` for a request to `scheme://authority` with `path_and_query`.
    pub fn location(&self, scheme: &str, authority: &str, path_and_query: &str) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let (host, port) = split_authority(authority);
        let new_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let port = match (self.port, &self.host) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            // A new scheme has its own default port; a non-default one is kept.
            (None, None) if new_scheme != scheme => port.filter(|p| *p != 80 && *p != 443),
            (None, None) => port,
        };
        let host = self.host.as_deref().unwrap_or(host);
        let mut new_path = match &self.path {
            PathRewrite::Keep => path.to_string(),
            PathRewrite::Replace(p) => p.clone(),
            PathRewrite::Prefix { len, with } => format!("{with}{}", path.get(*len..).unwrap_or("")),
            PathRewrite::Regex { pattern, substitution } => pattern.replace_all(path, substitution.as_str()).into_owned(),
        };
        // A replacement path with its own query replaces the request's.
        let replaced_query = matches!(self.path, PathRewrite::Replace(_)) && new_path.contains('?');
        if let Some(q) = query.filter(|q| !self.strip_query && !replaced_query && !q.is_empty()) {
            new_path.push(if new_path.contains('?') { '&' } else { '?' });
            new_path.push_str(q);
        }
        match port {
            Some(p) => format!("{new_scheme}://{host}:{p}{new_path}"),
            None => format!("{new_scheme}://{host}{new_path}"),
        }
    }
}

/// `host:port` → (host, port); IPv6 literals keep their brackets.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(yaml: &str, m: &str) -> Redirect {
        let r: model::Redirect = serde_norway::from_str(yaml).expect("redirect");
        let m: model::RouteMatch = serde_norway::from_str(m).expect("match");
        Redirect::new(&r, &m).expect("compiles")
    }

    #[test]
    fn builds_locations_from_the_request() {
        let any = "{ prefix: / }";
        assert_eq!(redirect("{}", any).location("http", "a:8080", "/x?y=1"), "http://a:8080/x?y=1");
        assert_eq!(redirect("{ scheme: https }", any).location("http", "a:80", "/x"), "https://a/x");
        assert_eq!(redirect("{ scheme: https }", any).location("http", "a:8080", "/x"), "https://a:8080/x");
        assert_eq!(redirect("{ host: b.example }", any).location("http", "a:8080", "/x"), "http://b.example/x");
        assert_eq!(redirect("{ host: b, port: 9 }", any).location("http", "a", "/x"), "http://b:9/x");
        assert_eq!(redirect("{ port: 9 }", any).location("http", "[::1]:80", "/x"), "http://[::1]:9/x");
        assert_eq!(redirect("{ path: /new, strip_query: true }", any).location("http", "a", "/x?y=1"), "http://a/new");
        assert_eq!(redirect("{ path: /new }", any).location("http", "a", "/x?y=1"), "http://a/new?y=1");
        assert_eq!(redirect("{ path: '/new?z=2' }", any).location("http", "a", "/x?y=1"), "http://a/new?z=2");
        let prefix = redirect("{ prefix_rewrite: /v2/ }", "{ prefix: /v1/ }");
        assert_eq!(prefix.location("http", "a", "/v1/items/7?q"), "http://a/v2/items/7?q");
        let re = redirect(r#"{ regex_rewrite: { pattern: '^/v([0-9]+)/(.*)$', substitution: '/api/\2?version=\1' } }"#, any);
        assert_eq!(re.location("http", "a", "/v3/users?x=1"), "http://a/api/users?version=3&x=1");
        assert_eq!(redirect("{ response_code: 308 }", any).status, 308);
    }

    #[test]
    fn envoy_substitutions_become_regex_crate_ones() {
        assert_eq!(substitution(r"/a/\1/\12$x\\"), "/a/${1}/${12}$$x\\");
    }
}
