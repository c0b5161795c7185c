//! The channel from the sidecar to its local app: service invocation, subscription discovery, topic
//! and binding event delivery, over HTTP or the gRPC `AppCallback` service.

use std::collections::HashMap;

use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::app_callback_client::AppCallbackClient;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use oxidecar_components::subscription::{Match, Routes, Rule, Subscription};
use serde::Deserialize;
use tonic::transport::Channel;

use crate::config::AppProtocol;
use crate::invoke::{InvokeError, InvokeRequest, InvokeResponse};

/// What the app said about a delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// The delivery failed and may be tried again; the failure says how.
    Retry(Failure),
    Drop,
}

/// How a delivery to the app failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The app answered with status `RETRY`.
    AskedRetry,
    /// The HTTP app answered this status.
    Http(StatusCode),
    /// The gRPC call failed with this code (an app that cannot be reached gives `UNAVAILABLE`).
    Grpc(tonic::Code),
    /// The HTTP app could not be reached (refused, reset, or its answer was cut off).
    Unreachable,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::AskedRetry => f.write_str("the app answered status RETRY"),
            Failure::Http(s) => write!(f, "the app answered HTTP {s}"),
            Failure::Grpc(c) => write!(f, "the app's gRPC call failed with {c:?}"),
            Failure::Unreachable => f.write_str("the app could not be reached"),
        }
    }
}

/// An input binding event the app did not accept: how, and a message naming the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRefused {
    pub failure: Failure,
    pub message: String,
}

/// A connection to the local app (lazily connected; reconnects on its own).
pub struct AppChannel {
    port: u16,
    protocol: AppProtocol,
    http: Client<HttpConnector, Full<Bytes>>,
    grpc: AppCallbackClient<Channel>,
}

impl AppChannel {
    /// A channel to `127.0.0.1:port`.
    pub fn new(port: u16, protocol: AppProtocol) -> Self {
        let uri = http::Uri::from_maybe_shared(format!("http://127.0.0.1:{port}"))
            .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1"));
        let channel = Channel::builder(uri).connect_lazy();
        Self {
            port,
            protocol,
            http: Client::builder(TokioExecutor::new()).build_http(),
            grpc: AppCallbackClient::new(channel),
        }
    }

    /// The app port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The app protocol.
    pub fn protocol(&self) -> AppProtocol {
        self.protocol
    }

    /// Whether the app accepts TCP connections yet.
    pub async fn is_listening(&self) -> bool {
        tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
    }

    async fn http_call(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let uri = format!("http://127.0.0.1:{}/{}", self.port, path_and_query.trim_start_matches('/'));
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
            h.remove(header::HOST);
            h.remove(header::CONTENT_LENGTH);
            h.remove(header::TRANSFER_ENCODING);
            h.remove(header::CONNECTION);
        }
        let req = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| format!("{e}"))?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// Service invocation on the local app.
    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let failed = |reason: String| InvokeError::Failed { app_id: req.app_id.clone(), method: req.method.clone(), reason };
        match self.protocol {
            AppProtocol::Http => {
                let pq = if req.query.is_empty() { req.method.clone() } else { format!("{}?{}", req.method, req.query) };
                let mut headers = req.headers.clone();
                if !req.content_type.is_empty()
                    && let Ok(v) = HeaderValue::from_str(&req.content_type) {
                        headers.insert(header::CONTENT_TYPE, v);
                    }
                let (status, headers, body) =
                    self.http_call(req.http_verb.clone(), &pq, headers, req.body.clone()).await.map_err(failed)?;
                let content_type =
                    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                Ok(InvokeResponse { status, headers, body, content_type })
            }
            AppProtocol::Grpc => {
                let verb = verb_number(&req.http_verb);
                let msg = common::InvokeRequest {
                    method: req.method.clone(),
                    data: Some(prost_types::Any { type_url: String::new(), value: req.body.to_vec() }),
                    content_type: req.content_type.clone(),
                    http_extension: Some(common::HttpExtension { verb, querystring: req.query.clone() }),
                };
                let resp = self.grpc.clone().on_invoke(msg).await.map_err(|s| failed(format!("{}: {}", s.code(), s.message())))?;
                let resp = resp.into_inner();
                Ok(InvokeResponse {
                    status: StatusCode::OK,
                    headers: HeaderMap::new(),
                    body: resp.data.map(|a| Bytes::from(a.value)).unwrap_or_default(),
                    content_type: resp.content_type,
                })
            }
        }
    }

    /// The app's programmatic subscriptions (`ListTopicSubscriptions` or `GET /dapr/subscribe`).
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, String> {
        match self.protocol {
            AppProtocol::Grpc => {
                let resp = self
                    .grpc
                    .clone()
                    .list_topic_subscriptions(())
                    .await
                    .map_err(|s| format!("ListTopicSubscriptions: {}: {}", s.code(), s.message()))?;
                let mut out = Vec::new();
                for s in resp.into_inner().subscriptions {
                    let routes = s.routes.unwrap_or_default();
                    out.push(subscription(
                        s.pubsub_name,
                        s.topic,
                        routes.rules.into_iter().map(|r| (r.r#match, r.path)).collect(),
                        routes.default,
                        s.dead_letter_topic,
                        s.metadata,
                    )?);
                }
                Ok(out)
            }
            AppProtocol::Http => {
                let (status, _, body) = self.http_call(Method::GET, "dapr/subscribe", HeaderMap::new(), Bytes::new()).await?;
                if status == StatusCode::NOT_FOUND {
                    return Ok(Vec::new());
                }
                if !status.is_success() {
                    return Err(format!("GET /dapr/subscribe answered {status}"));
                }
                let list: Vec<HttpSubscription> =
                    serde_json::from_slice(&body).map_err(|e| format!("GET /dapr/subscribe: bad JSON: {e}"))?;
                list.into_iter()
                    .map(|s| {
                        let routes = s.routes.unwrap_or_default();
                        let default = if routes.default.is_empty() { s.route } else { routes.default };
                        subscription(
                            s.pubsubname,
                            s.topic,
                            routes.rules.into_iter().map(|r| (r.matcher, r.path)).collect(),
                            default,
                            s.dead_letter_topic,
                            s.metadata,
                        )
                    })
                    .collect()
            }
        }
    }

    /// Delivers one topic event to `path` on the app. With `raw` (published with `rawPayload=true`)
    /// the app gets the published bytes and content type as they are: the HTTP body is the payload,
    /// and a gRPC app's `TopicEventRequest.data` is the payload (the envelope fields only name it).
    /// `extra` headers go along (HTTP headers, or gRPC metadata of `OnTopicEvent`): the lane and
    /// the trace context.
    pub async fn deliver_event(&self, event: &serde_json::Value, raw: Option<RawPayload<'_>>, path: &str, extra: &HeaderMap) -> Verdict {
        match self.protocol {
            AppProtocol::Grpc => {
                let s = |k: &str| event.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                let data = match (raw, event.get("data_base64"), event.get("data")) {
                    (Some(r), _, _) => r.data.to_vec(),
                    (None, Some(serde_json::Value::String(b64)), _) => crate::cloudevent::base64_decode(b64).unwrap_or_default(),
                    (None, _, Some(serde_json::Value::String(text))) => text.clone().into_bytes(),
                    (None, _, Some(v)) => v.to_string().into_bytes(),
                    _ => Vec::new(),
                };
                let req = pb::TopicEventRequest {
                    id: s("id"),
                    source: s("source"),
                    r#type: s("type"),
                    spec_version: s("specversion"),
                    data_content_type: raw.map(|r| r.content_type.to_string()).unwrap_or_else(|| s("datacontenttype")),
                    data,
                    topic: s("topic"),
                    pubsub_name: s("pubsubname"),
                    path: path.to_string(),
                    extensions: extensions(event),
                };
                let mut req = tonic::Request::new(req);
                *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(extra.clone());
                match self.grpc.clone().on_topic_event(req).await {
                    Ok(r) => match r.into_inner().status {
                        1 => Verdict::Retry(Failure::AskedRetry),
                        2 => Verdict::Drop,
                        _ => Verdict::Success,
                    },
                    Err(status) => Verdict::Retry(Failure::Grpc(status.code())),
                }
            }
            AppProtocol::Http => {
                let mut headers = extra.clone();
                let (ct, body) = match raw {
                    Some(r) => (
                        HeaderValue::from_str(r.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
                        r.data.clone(),
                    ),
                    None => (HeaderValue::from_static("application/cloudevents+json"), Bytes::from(event.to_string())),
                };
                headers.insert(header::CONTENT_TYPE, ct);
                match self.http_call(Method::POST, path, headers, body).await {
                    Ok((status, _, body)) if status.is_success() => http_verdict(&body),
                    Ok((StatusCode::NOT_FOUND, _, _)) => Verdict::Drop,
                    Ok((status, _, _)) => Verdict::Retry(Failure::Http(status)),
                    Err(_) => Verdict::Retry(Failure::Unreachable),
                }
            }
        }
    }

    /// POSTs a JSON document to the app (HTTP apps only).
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<StatusCode, String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (status, _, _) = self.http_call(Method::POST, path, headers, Bytes::from(body.to_string())).await?;
        Ok(status)
    }

    /// Delivers one input binding event (gRPC: `OnBindingEvent` with `name`; HTTP: POST to `route`);
    /// `Err` when the app did not accept it.
    pub async fn deliver_binding(&self, name: &str, route: &str, data: Bytes, metadata: HashMap<String, String>) -> Result<(), BindingRefused> {
        let refused = |failure: Failure, detail: String| BindingRefused { failure, message: format!("input binding {name:?}: {detail}") };
        match self.protocol {
            AppProtocol::Grpc => {
                let req = pb::BindingEventRequest { name: name.to_string(), data: data.to_vec(), metadata };
                match self.grpc.clone().on_binding_event(req).await {
                    Ok(_) => Ok(()),
                    Err(s) => Err(refused(Failure::Grpc(s.code()), format!("OnBindingEvent failed: {:?}: {}", s.code(), s.message()))),
                }
            }
            AppProtocol::Http => {
                let mut headers = HeaderMap::new();
                for (k, v) in metadata {
                    if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                        headers.insert(k, v);
                    }
                }
                let path = route.trim_start_matches('/');
                match self.http_call(Method::POST, route, headers, data).await {
                    Ok((s, _, _)) if s.is_success() => Ok(()),
                    Ok((s, _, _)) => Err(refused(Failure::Http(s), format!("POST /{path} answered {s}"))),
                    Err(e) => Err(refused(Failure::Unreachable, format!("POST /{path}: {e}"))),
                }
            }
        }
    }
}

/// A message published with `rawPayload=true`: delivered without a CloudEvent envelope.
#[derive(Debug, Clone, Copy)]
pub struct RawPayload<'a> {
    pub data: &'a Bytes,
    /// The publisher's content type (`application/octet-stream` when it gave none).
    pub content_type: &'a str,
}

/// CloudEvent attributes outside the core set, as the `extensions` struct Dapr sends gRPC apps.
fn extensions(event: &serde_json::Value) -> Option<prost_types::Struct> {
    const CORE: &[&str] = &["id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"];
    let obj = event.as_object()?;
    let fields = obj.iter().filter(|(k, _)| !CORE.contains(&k.as_str())).map(|(k, v)| (k.clone(), prost_value(v))).collect();
    Some(prost_types::Struct { fields })
}

fn prost_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.iter().map(prost_value).collect() }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), prost_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn http_verdict(body: &Bytes) -> Verdict {
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        status: String,
    }
    match serde_json::from_slice::<Status>(body).map(|s| s.status.to_ascii_uppercase()) {
        Ok(s) if s == "RETRY" => Verdict::Retry(Failure::AskedRetry),
        Ok(s) if s == "DROP" => Verdict::Drop,
        _ => Verdict::Success,
    }
}

fn verb_number(m: &Method) -> i32 {
    use common::http_extension::Verb;
    (match *m {
        Method::GET => Verb::Get,
        Method::HEAD => Verb::Head,
        Method::POST => Verb::Post,
        Method::PUT => Verb::Put,
        Method::DELETE => Verb::Delete,
        Method::CONNECT => Verb::Connect,
        Method::OPTIONS => Verb::Options,
        Method::TRACE => Verb::Trace,
        Method::PATCH => Verb::Patch,
        _ => Verb::None,
    }) as i32
}

fn subscription(
    pubsub_name: String,
    topic: String,
    rules: Vec<(String, String)>,
    default: String,
    dead_letter_topic: String,
    metadata: HashMap<String, String>,
) -> Result<Subscription, String> {
    let mut parsed = Vec::with_capacity(rules.len());
    for (i, (expr, path)) in rules.into_iter().enumerate() {
        let matcher = Match::parse(&expr).map_err(|m| format!("subscription {pubsub_name}/{topic}: rules[{i}]: {m}"))?;
        parsed.push(Rule { matcher, path });
    }
    Ok(Subscription {
        pubsub_name,
        topic,
        routes: Routes { rules: parsed, default },
        dead_letter_topic: (!dead_letter_topic.is_empty()).then_some(dead_letter_topic),
        metadata,
    })
}

#[derive(Deserialize, Default)]
struct HttpRule {
    #[serde(rename = "match", default)]
    matcher: String,
    path: String,
}

#[derive(Deserialize, Default)]
struct HttpRoutes {
    #[serde(default)]
    rules: Vec<HttpRule>,
    #[serde(default)]
    default: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpSubscription {
    pubsubname: String,
    topic: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    routes: Option<HttpRoutes>,
    #[serde(default)]
    dead_letter_topic: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}
