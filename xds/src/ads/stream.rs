//! One ADS stream (delta or state of the world) and the SDS stream to pilot-agent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::metrics::XdsMetrics;
use super::state::{State, Update};
use super::transport::XdsAddress;
use super::{AdsConfig, Handler};
use crate::envoy::{Kind, ResourceSet};

/// gRPC status code INVALID_ARGUMENT, what Envoy puts in a NACK's error_detail.
const INVALID_ARGUMENT: i32 = 3;

fn nack(detail: Option<String>) -> Option<Status> {
    detail.map(|message| Status { code: INVALID_ARGUMENT, message, details: Vec::new() })
}

fn request<T>(address: &XdsAddress, body: T) -> Result<tonic::Request<T>, String> {
    let mut req = tonic::Request::new(body);
    if let Some(bearer) = address.bearer()? {
        req.metadata_mut().insert("authorization", bearer.parse().map_err(|_| "the token is not a valid header value".to_string())?);
    }
    Ok(req)
}

/// The order Envoy asks in: clusters, their endpoints, listeners, their routes (+ secrets).
fn kinds(state: &State) -> Vec<Kind> {
    let mut k = vec![Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route];
    if state.secrets_over_ads {
        k.push(Kind::Secret);
    }
    k
}

pub(crate) async fn run_ads(config: &AdsConfig, state: &Arc<Mutex<State>>, handler: &Arc<dyn Handler>, metrics: &XdsMetrics) -> Result<(), String> {
    let channel = config.address.connect().await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    if config.delta { delta(config, &mut client, state, handler, metrics).await } else { sotw(config, &mut client, state, handler, metrics).await }
}

async fn delta(
    config: &AdsConfig,
    client: &mut AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    state: &Arc<Mutex<State>>,
    handler: &Arc<dyn Handler>,
    metrics: &XdsMetrics,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
    let mut subscribed: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
    let mut node = Some(config.node.clone());
    {
        // Resume: announce what is held, so the server sends only what changed.
        let st = state.lock().await;
        for kind in kinds(&st) {
            let wanted = st.wanted(kind);
            if matches!(kind, Kind::Endpoint | Kind::Route) && wanted.as_ref().is_none_or(BTreeSet::is_empty) {
                continue;
            }
            let names: Vec<String> = wanted.clone().map(|w| w.into_iter().collect()).unwrap_or_default();
            subscribed.insert(kind, wanted.unwrap_or_default());
            let req = DeltaDiscoveryRequest {
                node: node.take(),
                type_url: kind.type_url().to_string(),
                resource_names_subscribe: names,
                initial_resource_versions: st.versions.get(&kind).map(|v| v.clone().into_iter().collect()).unwrap_or_default(),
                ..Default::default()
            };
            tx.send(req).await.map_err(|_| "request channel closed".to_string())?;
        }
    }
    let mut inbound = client.delta_aggregated_resources(request(&config.address, ReceiverStream::new(rx))?).await.map_err(|e| e.to_string())?.into_inner();
    metrics.connected.set(1);
    tracing::info!(address = %config.address, "xDS stream (delta) up");
    while let Some(mut resp) = inbound.message().await.map_err(|e| e.to_string())? {
        let Some(kind) = Kind::from_type_url(&resp.type_url) else {
            let req = DeltaDiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                error_detail: nack(Some(format!("type {} is not supported by oxidecar", resp.type_url))),
                ..Default::default()
            };
            tx.send(req).await.map_err(|_| "request channel closed".to_string())?;
            continue;
        };
        let update = Update {
            kind,
            resources: std::mem::take(&mut resp.resources).into_iter().filter_map(|r| r.resource.map(|a| (r.name, r.version, a))).collect(),
            removed: std::mem::take(&mut resp.removed_resources),
            replace_all: false,
        };
        let mut st = state.lock().await;
        let verdict = st.receive(update, handler.as_ref(), metrics);
        tx.send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            error_detail: nack(verdict.error),
            ..Default::default()
        })
        .await
        .map_err(|_| "request channel closed".to_string())?;
        // New clusters or listeners may name new endpoints or routes: (un)subscribe like Envoy.
        for dependent in [Kind::Endpoint, Kind::Route] {
            let Some(wanted) = st.wanted(dependent) else { continue };
            let have = subscribed.entry(dependent).or_default();
            let add: Vec<String> = wanted.difference(have).cloned().collect();
            let drop: Vec<String> = have.difference(&wanted).cloned().collect();
            if add.is_empty() && drop.is_empty() {
                continue;
            }
            *have = wanted;
            tx.send(DeltaDiscoveryRequest {
                type_url: dependent.type_url().to_string(),
                resource_names_subscribe: add,
                resource_names_unsubscribe: drop,
                ..Default::default()
            })
            .await
            .map_err(|_| "request channel closed".to_string())?;
        }
    }
    Ok(())
}

async fn sotw(
    config: &AdsConfig,
    client: &mut AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    state: &Arc<Mutex<State>>,
    handler: &Arc<dyn Handler>,
    metrics: &XdsMetrics,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(64);
    let mut requested: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
    let mut node = Some(config.node.clone());
    {
        let st = state.lock().await;
        for kind in kinds(&st) {
            let wanted = st.wanted(kind);
            if matches!(kind, Kind::Endpoint | Kind::Route) && wanted.as_ref().is_none_or(BTreeSet::is_empty) {
                continue;
            }
            requested.insert(kind, wanted.clone().unwrap_or_default());
            tx.send(DiscoveryRequest {
                node: node.take(),
                type_url: kind.type_url().to_string(),
                version_info: st.type_versions.get(&kind).cloned().unwrap_or_default(),
                resource_names: wanted.map(|w| w.into_iter().collect()).unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(|_| "request channel closed".to_string())?;
        }
    }
    let mut inbound = client.stream_aggregated_resources(request(&config.address, ReceiverStream::new(rx))?).await.map_err(|e| e.to_string())?.into_inner();
    metrics.connected.set(1);
    tracing::info!(address = %config.address, "xDS stream (state of the world) up");
    while let Some(resp) = inbound.message().await.map_err(|e| e.to_string())? {
        let Some(kind) = Kind::from_type_url(&resp.type_url) else { continue };
        let mut names = ResourceSet::default();
        let mut resources = Vec::new();
        for any in &resp.resources {
            // Names come from the resources themselves in state of the world.
            let name = names.insert_any(kind, any).unwrap_or_default();
            resources.push((name, resp.version_info.clone(), any.clone()));
        }
        let update = Update { kind, resources, removed: Vec::new(), replace_all: matches!(kind, Kind::Cluster | Kind::Listener) };
        let mut st = state.lock().await;
        let verdict = st.receive(update, handler.as_ref(), metrics);
        let version = if verdict.error.is_none() {
            st.type_versions.insert(kind, resp.version_info.clone());
            resp.version_info.clone()
        } else {
            st.type_versions.get(&kind).cloned().unwrap_or_default()
        };
        let names_of = |k: Kind, st: &State| st.wanted(k).map(|w| w.into_iter().collect()).unwrap_or_default();
        tx.send(DiscoveryRequest {
            type_url: resp.type_url.clone(),
            version_info: version,
            response_nonce: resp.nonce.clone(),
            resource_names: names_of(kind, &st),
            error_detail: nack(verdict.error),
            ..Default::default()
        })
        .await
        .map_err(|_| "request channel closed".to_string())?;
        for dependent in [Kind::Endpoint, Kind::Route] {
            let Some(wanted) = st.wanted(dependent) else { continue };
            if requested.get(&dependent) == Some(&wanted) || dependent == kind {
                requested.insert(dependent, wanted);
                continue;
            }
            requested.insert(dependent, wanted.clone());
            tx.send(DiscoveryRequest {
                type_url: dependent.type_url().to_string(),
                version_info: st.type_versions.get(&dependent).cloned().unwrap_or_default(),
                resource_names: wanted.into_iter().collect(),
                ..Default::default()
            })
            .await
            .map_err(|_| "request channel closed".to_string())?;
        }
    }
    Ok(())
}

/// Pilot-agent's SDS: `default` and `ROOTCA` over their own stream, handed to the proxy.
pub(crate) async fn run_sds(
    address: XdsAddress,
    node: Node,
    handler: Arc<dyn Handler>,
    metrics: XdsMetrics,
    (initial, max): (Duration, Duration),
    held: super::HeldView,
    stop: CancellationToken,
) {
    let mut backoff = initial;
    loop {
        let result: Result<(), String> = async {
            let channel = address.connect().await?;
            let mut client = SecretDiscoveryServiceClient::new(channel);
            let (tx, rx) = mpsc::channel::<DiscoveryRequest>(8);
            tx.send(DiscoveryRequest {
                node: Some(node.clone()),
                type_url: Kind::Secret.type_url().to_string(),
                resource_names: vec!["default".into(), "ROOTCA".into()],
                ..Default::default()
            })
            .await
            .map_err(|_| "request channel closed".to_string())?;
            let mut inbound = client.stream_secrets(request(&address, ReceiverStream::new(rx))?).await.map_err(|e| e.to_string())?.into_inner();
            let mut st = State::new(crate::model::Snapshot::empty(), true, held.clone());
            while let Some(resp) = inbound.message().await.map_err(|e| e.to_string())? {
                let resources = resp.resources.iter().map(|a| (String::new(), resp.version_info.clone(), a.clone())).collect();
                let verdict = st.receive(Update { kind: Kind::Secret, resources, removed: Vec::new(), replace_all: false }, handler.as_ref(), &metrics);
                tx.send(DiscoveryRequest {
                    type_url: resp.type_url.clone(),
                    version_info: resp.version_info.clone(),
                    response_nonce: resp.nonce.clone(),
                    resource_names: vec!["default".into(), "ROOTCA".into()],
                    error_detail: nack(verdict.error),
                    ..Default::default()
                })
                .await
                .map_err(|_| "request channel closed".to_string())?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(address = %address, error = %e, retry_in = ?backoff, "SDS stream failed; reconnecting");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}
