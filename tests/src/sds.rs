//! An in-test SDS server shaped like pilot-agent's: Envoy's SecretDiscoveryService on a Unix
//! socket (`./var/run/secrets/workload-spiffe-uds/socket` under a pod-like root), serving the
//! workload secrets `default` (certificate chain + key) and `ROOTCA` (trust bundle) from
//! certificates `oxidecar dev-ca` minted, pushing rotations, and recording ACKs and NACKs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{SecretDiscoveryService, SecretDiscoveryServiceServer};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use oxidecar_xds::envoy::render::{certificate_secret, root_secret};

/// Where pilot-agent puts its SDS socket, relative to the pod's root.
pub const AGENT_SDS_SOCKET: &str = "var/run/secrets/workload-spiffe-uds/socket";

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// What the server saw from its clients.
#[derive(Debug, Clone, Default)]
pub struct SdsSeen {
    pub streams: u64,
    /// Version of every ACKed response, in order.
    pub acks: Vec<String>,
    /// `(version, error message)` of every NACK.
    pub nacks: Vec<(String, String)>,
    /// Secret names the clients asked for.
    pub requested: Vec<String>,
}

struct Shared {
    secrets: Mutex<BTreeMap<String, Secret>>,
    seen: Mutex<SdsSeen>,
    /// The names changed by the last push, with a counter so every push is seen.
    pushed: watch::Sender<(u64, Vec<String>)>,
}

/// A running SDS server.
pub struct SdsServer {
    pub socket: PathBuf,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SdsServer {
    /// Serves `secrets` on `root/var/run/secrets/workload-spiffe-uds/socket`.
    pub async fn start(root: &Path, secrets: Vec<Secret>) -> SdsServer {
        let socket = root.join(AGENT_SDS_SOCKET);
        std::fs::create_dir_all(socket.parent().expect("socket dir")).expect("create the socket directory");
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the SDS socket");
        let shared = Arc::new(Shared {
            secrets: Mutex::new(secrets.into_iter().map(|s| (s.name.clone(), s)).collect()),
            seen: Mutex::default(),
            pushed: watch::channel((0, Vec::new())).0,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = SecretDiscoveryServiceServer::new(Sds(shared.clone()));
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        SdsServer { socket, shared, _stop: stop }
    }

    /// The `--sds-address` value for this server.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Replaces one secret (by name) and pushes it to every stream.
    pub fn push(&self, secret: Secret) {
        let name = secret.name.clone();
        self.shared.secrets.lock().expect("secrets").insert(name.clone(), secret);
        self.shared.pushed.send_modify(|(n, names)| {
            *n += 1;
            *names = vec![name];
        });
    }

    pub fn seen(&self) -> SdsSeen {
        self.shared.seen.lock().expect("seen").clone()
    }
}

/// `default` and `ROOTCA` from a workload directory `oxidecar dev-ca` wrote.
pub fn workload_secrets(dir: &Path) -> Vec<Secret> {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()));
    vec![certificate_secret(read("cert-chain.pem"), read("key.pem")), root_secret(read("root-cert.pem"))]
}

struct Sds(Arc<Shared>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = BoxStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = BoxStream<DiscoveryResponse>;

    async fn delta_secrets(&self, _: Request<Streaming<DeltaDiscoveryRequest>>) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented("SecretDiscoveryService.DeltaSecrets is not served by the test SDS server (StreamSecrets is)"))
    }

    async fn fetch_secrets(&self, _: Request<DiscoveryRequest>) -> Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("SecretDiscoveryService.FetchSecrets is not served by the test SDS server (StreamSecrets is)"))
    }

    async fn stream_secrets(&self, request: Request<Streaming<DiscoveryRequest>>) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let shared = self.0.clone();
        shared.seen.lock().expect("seen").streams += 1;
        tokio::spawn(async move {
            let mut pushed = shared.pushed.subscribe();
            let mut wanted: Vec<String> = Vec::new();
            let mut nonce = 0u64;
            // Versions by nonce, to name what an ACK or NACK answers.
            let mut sent: BTreeMap<String, String> = BTreeMap::new();
            let response = |names: &[String], nonce: u64, version: u64| {
                let secrets = shared.secrets.lock().expect("secrets");
                let resources = names
                    .iter()
                    .filter_map(|n| secrets.get(n))
                    .map(|s| Any { type_url: SECRET_TYPE.to_string(), value: s.encode_to_vec() })
                    .collect();
                DiscoveryResponse { version_info: format!("v{version}"), resources, type_url: SECRET_TYPE.to_string(), nonce: nonce.to_string(), ..Default::default() }
            };
            loop {
                tokio::select! {
                    req = inbound.message() => {
                        let Ok(Some(req)) = req else { return };
                        if !req.response_nonce.is_empty() {
                            let version = sent.get(&req.response_nonce).cloned().unwrap_or_default();
                            let mut seen = shared.seen.lock().expect("seen");
                            match &req.error_detail {
                                Some(e) => seen.nacks.push((version, e.message.clone())),
                                None => seen.acks.push(version),
                            }
                            continue;
                        }
                        shared.seen.lock().expect("seen").requested.extend(req.resource_names.iter().cloned());
                        wanted = req.resource_names.clone();
                        nonce += 1;
                        let resp = response(&wanted, nonce, pushed.borrow().0);
                        sent.insert(resp.nonce.clone(), resp.version_info.clone());
                        if tx.send(Ok(resp)).await.is_err() { return }
                    }
                    c = pushed.changed() => {
                        if c.is_err() { return }
                        let (version, names) = pushed.borrow_and_update().clone();
                        let names: Vec<String> = names.into_iter().filter(|n| wanted.contains(n)).collect();
                        if names.is_empty() { continue }
                        nonce += 1;
                        let resp = response(&names, nonce, version);
                        sent.insert(resp.nonce.clone(), resp.version_info.clone());
                        if tx.send(Ok(resp)).await.is_err() { return }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
