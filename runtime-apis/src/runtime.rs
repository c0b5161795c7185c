//! Start-up and shutdown of the runtime: load components, bind both API ports, serve, drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use oxidecar_components::{Registry, Resources, defaults, load_resources_in_lane};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::api::Api;
use crate::app::AppChannel;
use crate::config::RuntimeConfig;
use crate::error::Error;
use crate::invoke::ServiceInvoker;
use crate::metrics::Metrics;
use crate::{delivery, grpc, http};

/// A running runtime: both API servers and the deliveries to the app.
pub struct Runtime {
    servers: TaskTracker,
    api: Arc<Api>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl Runtime {
    /// Load components (errors name file/component/key), bind both ports, start serving on the current tokio runtime.
    /// `registry` is the process-wide prometheus registry; runtime API metrics are registered there.
    /// `shutdown` is cancelled when the process drains: stop accepting, finish in-flight, close components.
    /// `on_shutdown_rpc` is called when an app calls the Shutdown RPC / POST /v1.0/shutdown, so the proxy drains and exits.
    pub async fn start(
        cfg: RuntimeConfig,
        invoker: Arc<dyn ServiceInvoker>,
        registry: &prometheus::Registry,
        shutdown: CancellationToken,
        on_shutdown_rpc: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Runtime, Error> {
        if cfg.app_id.is_empty() {
            return Err(Error::Config("--app-id is empty".to_string()));
        }
        let resources = if cfg.resources_paths.is_empty() {
            Resources { components: defaults::embedded(), subscriptions: Vec::new(), resiliency: Default::default() }
        } else {
            let lane = cfg.lanes.as_ref().and_then(|l| l.own_lane());
            load_resources_in_lane(&cfg.resources_paths, &cfg.app_id, lane.as_deref(), &Registry::builtin()).await?
        };
        let metrics = Metrics::new(registry)?;
        let grpc_listener =
            TcpListener::bind(cfg.grpc_addr).await.map_err(|source| Error::Bind { api: "gRPC", addr: cfg.grpc_addr, source })?;
        let http_listener =
            TcpListener::bind(cfg.http_addr).await.map_err(|source| Error::Bind { api: "HTTP", addr: cfg.http_addr, source })?;
        let local = |l: &TcpListener, api, addr| l.local_addr().map_err(|source| Error::Bind { api, addr, source });
        let grpc_addr = local(&grpc_listener, "gRPC", cfg.grpc_addr)?;
        let http_addr = local(&http_listener, "HTTP", cfg.http_addr)?;

        let (stores, infos) = Api::index(&resources.components);
        let api = Arc::new(Api {
            app_id: cfg.app_id.clone(),
            app: cfg.app_port.map(|p| Arc::new(AppChannel::new(p, cfg.app_protocol))),
            config: cfg,
            stores,
            components: resources.components,
            infos,
            subscriptions: Mutex::new(Vec::new()),
            extended_metadata: Mutex::new(HashMap::new()),
            invoker,
            resiliency: resources.resiliency,
            metrics,
            on_shutdown: on_shutdown_rpc,
            tasks: TaskTracker::new(),
            cancel: shutdown.child_token(),
        });
        delivery::start(api.clone(), resources.subscriptions);

        let servers = TaskTracker::new();
        let (a, s) = (api.clone(), shutdown.clone());
        servers.spawn(
            async move {
                if let Err(e) = grpc::serve(a, grpc_listener, s).await {
                    tracing::error!(error = %e, "runtime gRPC API stopped");
                }
            }
            .instrument(tracing::info_span!("runtime_grpc", addr = %grpc_addr)),
        );
        let (a, s) = (api.clone(), shutdown);
        servers.spawn(
            async move {
                if let Err(e) = http::serve(a, http_listener, s).await {
                    tracing::error!(error = %e, "runtime HTTP API stopped");
                }
            }
            .instrument(tracing::info_span!("runtime_http", addr = %http_addr)),
        );
        servers.close();
        tracing::info!(
            app_id = %api.app_id,
            %grpc_addr,
            %http_addr,
            components = api.components.len(),
            resiliency = ?api.resiliency.resources,
            "runtime APIs serving"
        );
        Ok(Runtime { servers, api, grpc_addr, http_addr })
    }

    /// The bound gRPC API address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP API address (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Resolves when all runtime servers have stopped; then stops deliveries and closes components.
    pub async fn wait(self) {
        self.servers.wait().await;
        self.api.cancel.cancel();
        self.api.tasks.close();
        self.api.tasks.wait().await;
        self.api.close_components().await;
        tracing::info!("runtime APIs stopped");
    }
}
