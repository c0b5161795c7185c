//! An in-test ADS server (tonic on envoy-types) that serves a [`ResourceSet`] over delta and
//! state-of-the-world streams, pushes changes, and records every ACK and NACK it receives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use oxidecar_xds::envoy::{Kind, ResourceSet};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// What the server saw from its clients.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// `(type, error message)` of every NACK.
    pub nacks: Vec<(Kind, String)>,
    /// ACKs per type.
    pub acks: BTreeMap<Kind, u64>,
    /// Streams opened.
    pub streams: u64,
    /// Node ids that connected.
    pub nodes: Vec<String>,
    /// `initial_resource_versions` sizes per type on each delta stream opening.
    pub resumed_with: Vec<BTreeMap<Kind, usize>>,
}

struct Shared {
    set: Mutex<ResourceSet>,
    seen: Mutex<Seen>,
    changed: watch::Sender<u64>,
    /// Bumped by `stop`: every open stream ends, as when the control plane dies.
    kill: watch::Sender<u64>,
}

/// A running ADS server on 127.0.0.1.
pub struct AdsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn version_of(any: &Any) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    any.value.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl AdsServer {
    /// Serves `set` on `port` (use `free_port()`; restart on the same port to test reconnects).
    pub async fn start(set: ResourceSet, port: u16) -> AdsServer {
        let (changed, _) = watch::channel(0);
        let (kill, _) = watch::channel(0);
        let shared = Arc::new(Shared { set: Mutex::new(set), seen: Mutex::default(), changed, kill });
        Self::serve(shared, port).await
    }

    async fn serve(shared: Arc<Shared>, port: u16) -> AdsServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind ADS server");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = AggregatedDiscoveryServiceServer::new(Ads(shared.clone())).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20);
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        AdsServer { addr, shared, stop: Some(stop) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the served resources and pushes the change to every stream.
    pub fn update(&self, f: impl FnOnce(&mut ResourceSet)) {
        f(&mut self.shared.set.lock().expect("set"));
        self.shared.changed.send_modify(|v| *v += 1);
    }

    pub fn seen(&self) -> Seen {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// Stops serving (streams end), keeping state for [`AdsServer::restart`].
    pub async fn stop(&mut self) {
        self.shared.kill.send_modify(|v| *v += 1);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Streams end when their senders drop; give the server a moment to release the port.
        for _ in 0..100 {
            if std::net::TcpListener::bind(self.addr).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Serves again on the same port with the same resources.
    pub async fn restart(&mut self) {
        let again = Self::serve(self.shared.clone(), self.addr.port()).await;
        self.stop = again.stop;
    }
}

struct Ads(Arc<Shared>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Ads {
    fn record(&self, kind: Option<Kind>, nonce: &str, error: Option<&envoy_types::pb::google::rpc::Status>) {
        let Some(kind) = kind else { return };
        if nonce.is_empty() {
            return;
        }
        let mut seen = self.0.seen.lock().expect("seen");
        match error {
            Some(e) => seen.nacks.push((kind, e.message.clone())),
            None => *seen.acks.entry(kind).or_default() += 1,
        }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(&self, request: Request<Streaming<DiscoveryRequest>>) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let shared = self.0.clone();
        let me = Ads(shared.clone());
        shared.seen.lock().expect("seen").streams += 1;
        tokio::spawn(async move {
            let mut changed = shared.changed.subscribe();
            let mut kill = shared.kill.subscribe();
            let mut names: HashMap<Kind, Vec<String>> = HashMap::new();
            let mut nonce = 0u64;
            let send = |kind: Kind, names: &[String], nonce: u64| {
                let set = shared.set.lock().expect("set");
                let wanted: BTreeSet<&String> = names.iter().collect();
                let resources: Vec<Any> = set.to_any(kind).into_iter().filter(|(n, _)| wanted.is_empty() || wanted.contains(n)).map(|(_, a)| a).collect();
                let version = format!("v{}", *shared.changed.borrow());
                DiscoveryResponse { version_info: version, resources, type_url: kind.type_url().to_string(), nonce: nonce.to_string(), ..Default::default() }
            };
            loop {
                tokio::select! {
                    _ = kill.changed() => return,
                    req = inbound.message() => {
                        let Ok(Some(req)) = req else { return };
                        if let Some(node) = &req.node {
                            shared.seen.lock().expect("seen").nodes.push(node.id.clone());
                        }
                        let kind = Kind::from_type_url(&req.type_url);
                        me.record(kind, &req.response_nonce, req.error_detail.as_ref());
                        let Some(kind) = kind else { continue };
                        let is_new = names.get(&kind) != Some(&req.resource_names);
                        if req.response_nonce.is_empty() || is_new {
                            names.insert(kind, req.resource_names.clone());
                            nonce += 1;
                            if tx.send(Ok(send(kind, &req.resource_names, nonce))).await.is_err() { return }
                        }
                    }
                    c = changed.changed() => {
                        if c.is_err() { return }
                        for (kind, n) in names.clone() {
                            nonce += 1;
                            if tx.send(Ok(send(kind, &n, nonce))).await.is_err() { return }
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(&self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let shared = self.0.clone();
        let me = Ads(shared.clone());
        shared.seen.lock().expect("seen").streams += 1;
        shared.seen.lock().expect("seen").resumed_with.push(BTreeMap::new());
        tokio::spawn(async move {
            let mut changed = shared.changed.subscribe();
            let mut kill = shared.kill.subscribe();
            // Per type: wildcard or names, and what the client holds (name → version).
            let mut subs: HashMap<Kind, (bool, BTreeSet<String>)> = HashMap::new();
            let mut held: HashMap<Kind, BTreeMap<String, String>> = HashMap::new();
            let mut nonce = 0u64;
            // What to send for `kind` so the client holds exactly what it should.
            let diff = |kind: Kind, sub: &(bool, BTreeSet<String>), held: &mut BTreeMap<String, String>, nonce: u64| -> Option<DeltaDiscoveryResponse> {
                let set = shared.set.lock().expect("set");
                let mut resources = Vec::new();
                let mut now: BTreeSet<String> = BTreeSet::new();
                for (name, any) in set.to_any(kind) {
                    if !sub.0 && !sub.1.contains(&name) {
                        continue;
                    }
                    now.insert(name.clone());
                    let v = version_of(&any);
                    if held.get(&name) != Some(&v) {
                        held.insert(name.clone(), v.clone());
                        resources.push(Resource { name, version: v, resource: Some(any), ..Default::default() });
                    }
                }
                let removed: Vec<String> = held.keys().filter(|n| !now.contains(*n)).cloned().collect();
                for r in &removed {
                    held.remove(r);
                }
                (!resources.is_empty() || !removed.is_empty()).then(|| DeltaDiscoveryResponse {
                    type_url: kind.type_url().to_string(),
                    resources,
                    removed_resources: removed,
                    nonce: nonce.to_string(),
                    system_version_info: format!("v{}", *shared.changed.borrow()),
                    ..Default::default()
                })
            };
            loop {
                tokio::select! {
                    _ = kill.changed() => return,
                    req = inbound.message() => {
                        let Ok(Some(req)) = req else { return };
                        if let Some(node) = &req.node {
                            shared.seen.lock().expect("seen").nodes.push(node.id.clone());
                        }
                        let kind = Kind::from_type_url(&req.type_url);
                        me.record(kind, &req.response_nonce, req.error_detail.as_ref());
                        let Some(kind) = kind else { continue };
                        if !req.response_nonce.is_empty() && req.resource_names_subscribe.is_empty() && req.resource_names_unsubscribe.is_empty() {
                            continue;
                        }
                        let first = !subs.contains_key(&kind);
                        let sub = subs.entry(kind).or_insert((false, BTreeSet::new()));
                        if first {
                            sub.0 = req.resource_names_subscribe.is_empty() || req.resource_names_subscribe.iter().any(|n| n == "*");
                            let h = held.entry(kind).or_default();
                            h.extend(req.initial_resource_versions.clone());
                            if let Some(last) = shared.seen.lock().expect("seen").resumed_with.last_mut() {
                                last.insert(kind, req.initial_resource_versions.len());
                            }
                        }
                        sub.1.extend(req.resource_names_subscribe.iter().filter(|n| *n != "*").cloned());
                        for n in &req.resource_names_unsubscribe {
                            sub.1.remove(n);
                        }
                        let sub = sub.clone();
                        nonce += 1;
                        let h = held.entry(kind).or_default();
                        for n in &req.resource_names_unsubscribe {
                            h.remove(n);
                        }
                        if let Some(resp) = diff(kind, &sub, h, nonce)
                            && tx.send(Ok(resp)).await.is_err() { return }
                    }
                    c = changed.changed() => {
                        if c.is_err() { return }
                        for kind in Kind::ALL {
                            let Some(sub) = subs.get(&kind).cloned() else { continue };
                            nonce += 1;
                            if let Some(resp) = diff(kind, &sub, held.entry(kind).or_default(), nonce)
                                && tx.send(Ok(resp)).await.is_err() { return }
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The Istio fixtures live beside the repository (`../shared/fixtures/istio`), or where
/// OXIDECAR_ISTIO_FIXTURES says.
pub fn fixture(name: &str) -> String {
    let dir = std::env::var("OXIDECAR_ISTIO_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/istio").to_string());
    let path = format!("{dir}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (set OXIDECAR_ISTIO_FIXTURES to the Istio fixture folder)"))
}

/// The full hotel-reservation sidecar dump (pod `geo` in namespace `hr2`).
pub fn hotel() -> ResourceSet {
    let dump = oxidecar_xds::envoy::dump::read_config_dump(&fixture("sidecar-full-configdump-v3-istio1.18-hotelreservation-geo.json")).expect("dump");
    assert!(dump.unreadable.is_empty(), "{:?}", dump.unreadable);
    dump.resources
}

/// Endpoints of `cluster` replaced by in-test upstreams with weights.
pub fn set_endpoints(set: &mut ResourceSet, cluster: &str, eps: &[(SocketAddr, u32)]) {
    set_endpoints_with(set, cluster, eps, &[]);
}

/// Like [`set_endpoints`], each endpoint carrying `transport_socket_match` metadata (Istio puts
/// `tlsMode: istio` there for endpoints with a sidecar, which selects the mTLS transport socket).
pub fn set_endpoints_with(set: &mut ResourceSet, cluster: &str, eps: &[(SocketAddr, u32)], socket_match: &[(&str, &str)]) {
    use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, SocketAddress, address, socket_address};
    use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint};
    use envoy_types::pb::google::protobuf::{Struct, Value, value};
    let metadata = (!socket_match.is_empty()).then(|| {
        let fields = socket_match.iter().map(|(k, v)| (k.to_string(), Value { kind: Some(value::Kind::StringValue(v.to_string())) })).collect();
        Metadata { filter_metadata: [("envoy.transport_socket_match".to_string(), Struct { fields })].into(), ..Default::default() }
    });
    let lb_endpoints = eps
        .iter()
        .map(|(addr, w)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: addr.ip().to_string(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(addr.port()))),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            load_balancing_weight: Some(envoy_types::pb::google::protobuf::UInt32Value { value: *w }),
            health_status: 1,
            metadata: metadata.clone(),
            ..Default::default()
        })
        .collect();
    set.endpoints.insert(
        cluster.to_string(),
        std::sync::Arc::new(ClusterLoadAssignment {
            cluster_name: cluster.to_string(),
            endpoints: vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }],
            ..Default::default()
        }),
    );
}
