//! Metadata, shutdown and service invocation RPCs.

use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use http::{HeaderMap, Method};
use tonic::{Request, Response, Status};

use super::GrpcApi;
use crate::error::ApiError;
use crate::invoke::InvokeRequest;

fn verb(ext: Option<&common::HttpExtension>) -> Method {
    use common::http_extension::Verb;
    match ext.and_then(|e| Verb::try_from(e.verb).ok()) {
        Some(Verb::Get) => Method::GET,
        Some(Verb::Head) => Method::HEAD,
        Some(Verb::Put) => Method::PUT,
        Some(Verb::Delete) => Method::DELETE,
        Some(Verb::Connect) => Method::CONNECT,
        Some(Verb::Options) => Method::OPTIONS,
        Some(Verb::Trace) => Method::TRACE,
        Some(Verb::Patch) => Method::PATCH,
        _ => Method::POST,
    }
}

/// The caller's metadata that travels with an `InvokeService` call as headers (trace context,
/// lane, the app's own): everything but gRPC's transport headers and the caller's API token.
fn forwarded_metadata(metadata: &tonic::metadata::MetadataMap) -> HeaderMap {
    let mut headers = metadata.clone().into_headers();
    let transport = |name: &http::HeaderName| {
        let n = name.as_str();
        n.starts_with("grpc-") || matches!(n, "content-type" | "te" | "content-length" | "host" | "connection" | "dapr-api-token" | "user-agent")
    };
    let drop: Vec<http::HeaderName> = headers.keys().filter(|k| transport(k)).cloned().collect();
    for name in drop {
        headers.remove(name);
    }
    headers
}

impl GrpcApi {
    pub(super) async fn do_get_metadata(&self, _req: Request<pb::GetMetadataRequest>) -> Result<Response<pb::GetMetadataResponse>, Status> {
        let api = &self.api;
        let registered_components = api
            .infos
            .iter()
            .map(|c| pb::RegisteredComponents {
                name: c.name.clone(),
                r#type: c.type_name.clone(),
                version: c.version.clone(),
                capabilities: c.capabilities.clone(),
            })
            .collect();
        let subscriptions = api
            .subscriptions
            .lock()
            .map(|subs| {
                subs.iter()
                    .map(|s| pb::PubsubSubscription {
                        pubsub_name: s.pubsub_name.clone(),
                        topic: s.topic.clone(),
                        metadata: s.metadata.clone(),
                        rules: Some(pb::PubsubSubscriptionRules {
                            rules: s
                                .routes
                                .rules
                                .iter()
                                .map(|r| pb::PubsubSubscriptionRule { r#match: String::new(), path: r.path.clone() })
                                .chain((!s.routes.default.is_empty()).then(|| pb::PubsubSubscriptionRule {
                                    r#match: String::new(),
                                    path: s.routes.default.clone(),
                                }))
                                .collect(),
                        }),
                        dead_letter_topic: s.dead_letter_topic.clone().unwrap_or_default(),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let extended_metadata = api.extended_metadata.lock().map(|m| m.clone()).unwrap_or_default();
        let app_connection_properties = api.app.as_ref().map(|a| pb::AppConnectionProperties {
            port: i32::from(a.port()),
            protocol: a.protocol().as_str().to_string(),
            channel_address: "127.0.0.1".to_string(),
            ..Default::default()
        });
        Ok(Response::new(pb::GetMetadataResponse {
            id: api.app_id.clone(),
            registered_components,
            extended_metadata,
            subscriptions,
            app_connection_properties,
            runtime_version: crate::RUNTIME_VERSION.to_string(),
            ..Default::default()
        }))
    }

    pub(super) async fn do_set_metadata(&self, req: Request<pb::SetMetadataRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        if r.key.is_empty() {
            return Err(ApiError::malformed("SetMetadata: key is empty").into());
        }
        if let Ok(mut m) = self.api.extended_metadata.lock() {
            m.insert(r.key, r.value);
        }
        Ok(Response::new(()))
    }

    pub(super) async fn do_shutdown(&self, _req: Request<pb::ShutdownRequest>) -> Result<Response<()>, Status> {
        tracing::info!("shutdown requested by the app through the runtime API");
        (self.api.on_shutdown)();
        Ok(Response::new(()))
    }

    pub(super) async fn do_invoke_service(&self, req: Request<pb::InvokeServiceRequest>) -> Result<Response<common::InvokeResponse>, Status> {
        let headers = forwarded_metadata(req.metadata());
        let r = req.into_inner();
        let Some(msg) = r.message else {
            return Err(ApiError::malformed(format!("InvokeService to app {:?}: message is missing", r.id)).into());
        };
        if r.id.is_empty() || msg.method.is_empty() {
            return Err(ApiError::malformed(format!("InvokeService: app id {:?} and method {:?} must not be empty", r.id, msg.method)).into());
        }
        let query = msg.http_extension.as_ref().map(|e| e.querystring.clone()).unwrap_or_default();
        let call = InvokeRequest {
            app_id: r.id.clone(),
            method: msg.method.trim_start_matches('/').to_string(),
            http_verb: verb(msg.http_extension.as_ref()),
            query,
            headers,
            body: msg.data.map(|a| Bytes::from(a.value)).unwrap_or_default(),
            content_type: msg.content_type,
        };
        let resp = self.api.invoke_app(call).await?;
        if !resp.status.is_success() {
            let body = String::from_utf8_lossy(&resp.body);
            return Err(Status::unknown(format!("app {:?} method {:?} answered HTTP {}: {body}", r.id, msg.method, resp.status)));
        }
        Ok(Response::new(common::InvokeResponse {
            data: Some(prost_types::Any { type_url: String::new(), value: resp.body.to_vec() }),
            content_type: resp.content_type,
        }))
    }
}
