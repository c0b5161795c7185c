//! `bindings.http`: an output binding that sends one HTTP request per call to `url` + the request
//! metadata `path`; every other request metadata entry becomes a header. The answer's body is the
//! response body and its metadata carry `statusCode`, `status` and the response headers, as daprd's
//! binding does. `create` is POST; the other operations are the HTTP methods of the same name.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{BindingRequest, BindingResponse, OutputBinding};
use crate::metadata::{Metadata, MetadataError};
use crate::{ComponentError, catalog};

/// The HTTP output binding.
#[derive(Debug)]
pub struct HttpBinding {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
    error_if_not_2xx: bool,
    max_body: usize,
    token: Option<(HeaderName, HeaderValue)>,
}

fn bad(key: &str, value: &str, reason: &str) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

/// `100Mi`, `5M`, `1024`: a size in bytes with an optional SI or binary suffix.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl HttpBinding {
    /// Builds the binding from Dapr's keys (see `docs/components.md`).
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::bindings::HTTP);
        let url = m.require("url")?;
        let uri: Uri = url.parse().map_err(|_| bad("url", &url, "is not a URL"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(bad("url", &url, "must be an http:// URL with a host (https is not supported by this build)"));
        }
        let timeout = m.duration("responseTimeout")?.unwrap_or(Duration::from_secs(30));
        if timeout.is_zero() {
            return Err(bad("responseTimeout", "0", "must be greater than zero"));
        }
        let error_if_not_2xx = m.take("errorIfNot2XX").map(|v| crate::catalog::parse_bool(&v).ok_or_else(|| bad("errorIfNot2XX", &v, "is not a bool"))).transpose()?.unwrap_or(true);
        let size = m.take("maxResponseBodySize").unwrap_or_else(|| "100Mi".to_string());
        let max_body = parse_size(&size).ok_or_else(|| bad("maxResponseBodySize", &size, "is not a size (1024, 10Mi, 5M)"))?;
        let token_value = m.take("securityToken").filter(|t| !t.is_empty());
        let token_header = m.take("securityTokenHeader").filter(|h| !h.is_empty());
        m.ignore("direction");
        m.finish()?;
        let token = match (token_header, token_value) {
            (Some(h), Some(v)) => Some((
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| bad("securityTokenHeader", &h, "is not a header name"))?,
                HeaderValue::from_str(&v).map_err(|_| bad("securityToken", "<redacted>", "is not a header value"))?,
            )),
            (None, Some(_)) => return Err(MetadataError::Missing { key: "securityTokenHeader".to_string() }),
            _ => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, base: url.trim_end_matches('/').to_string(), timeout, error_if_not_2xx, max_body, token })
    }

    fn method(op: &str) -> Option<Method> {
        Some(match op {
            "create" | "post" => Method::POST,
            "get" => Method::GET,
            "head" => Method::HEAD,
            "put" => Method::PUT,
            "patch" => Method::PATCH,
            "delete" => Method::DELETE,
            "options" => Method::OPTIONS,
            "trace" => Method::TRACE,
            _ => return None,
        })
    }

    fn request(&self, method: Method, req: BindingRequest) -> Result<(String, Request<Full<Bytes>>), ComponentError> {
        let invalid = |m: String| ComponentError::InvalidRequest(m);
        let url = match req.metadata.get("path").map(|p| p.trim_start_matches('/')).filter(|p| !p.is_empty()) {
            Some(path) => format!("{}/{path}", self.base),
            None => self.base.clone(),
        };
        let mut builder = Request::builder().method(method).uri(&url);
        for (k, v) in &req.metadata {
            if k == "path" {
                continue;
            }
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| invalid(format!("request metadata {k:?} is not a header name")))?;
            let value = HeaderValue::from_str(v).map_err(|_| invalid(format!("request metadata {k:?}: value is not a header value")))?;
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = &self.token {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(req.data)).map_err(|e| invalid(format!("request to {url}: {e}")))?;
        Ok((url, request))
    }
}

/// `content-type` → `Content-Type`, as Go (and so daprd) names headers.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[async_trait::async_trait]
impl OutputBinding for HttpBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create", "get", "head", "post", "put", "patch", "delete", "options", "trace"]
    }

    async fn invoke(&self, req: BindingRequest) -> Result<BindingResponse, ComponentError> {
        let method = Self::method(&req.operation).ok_or_else(|| ComponentError::Unsupported { operation: req.operation.clone() })?;
        let (url, request) = self.request(method, req)?;
        let exchange = async {
            let resp = self.client.request(request).await.map_err(|e| ComponentError::Unavailable(format!("http binding {url}: {e}")))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| ComponentError::Unavailable(format!("http binding {url}: response body: {e}")))?
                .to_bytes();
            Ok::<_, ComponentError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ComponentError::Unavailable(format!("http binding {url}: no answer within {:?}", self.timeout)))??;
        let status = parts.status;
        if self.error_if_not_2xx && !status.is_success() {
            return Err(ComponentError::Failed(format!("http binding {url}: received status code {}", status.as_u16())));
        }
        let mut metadata = HashMap::new();
        for (name, value) in &parts.headers {
            if let Ok(v) = value.to_str() {
                metadata.entry(canonical(name.as_str())).or_insert_with(|| v.to_string());
            }
        }
        metadata.insert("statusCode".to_string(), status.as_u16().to_string());
        metadata.insert("status".to_string(), format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()));
        Ok(BindingResponse { data: body, metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_header_names() {
        assert_eq!(parse_size("100Mi"), Some(100 << 20));
        assert_eq!(parse_size("5M"), Some(5_000_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("x-request-id"), "X-Request-Id");
    }
}
