//! Metadata exchange on the HTTP path and the Istio labels of a finished request.
//!
//! Outbound (to a mesh cluster, not passthrough): our metadata goes on the request, the peer's
//! comes back on the response and is removed before the app sees it. Inbound: the caller's
//! metadata is read from the request and removed; ours goes on the response.

use std::sync::Arc;

use http::HeaderValue;
use oxidecar_xds::Snapshot;
use oxidecar_xds::model::{ClusterKind, TrafficDirection};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::tls::socket::ConnInfo;
use super::MeshHttp;
use super::ctx::{Admitted, RequestCtx};
use crate::metrics::istio::{IstioLabels, Workload};
use crate::peer::{self, METADATA_HEADER, METADATA_ID_HEADER};

/// This node's encoded metadata, kept with the snapshot it was encoded from.
pub struct NodeHeaders {
    snapshot: Arc<Snapshot>,
    value: HeaderValue,
    id: HeaderValue,
}

impl MeshHttp {
    fn node_headers(&self, snapshot: &Arc<Snapshot>) -> Arc<NodeHeaders> {
        if let Some(h) = self.shared.node_headers.load_full()
            && (Arc::ptr_eq(&h.snapshot, snapshot) || h.snapshot.node == snapshot.node)
        {
            return h;
        }
        let (value, id) = peer::encode(&snapshot.node);
        let h = Arc::new(NodeHeaders { snapshot: snapshot.clone(), value, id });
        self.shared.node_headers.store(Some(h.clone()));
        h
    }

    fn to_mesh_cluster(ctx: &RequestCtx) -> bool {
        matches!(&ctx.cluster, Some(Admitted(c)) if matches!(c.kind, ClusterKind::Static | ClusterKind::Eds)) && !ctx.to_app && !ctx.to_runtime
    }

    /// Inbound: remember what the caller said about itself.
    pub(super) fn read_request_metadata(&self, session: &Session, ctx: &mut RequestCtx, direction: TrafficDirection) {
        if direction == TrafficDirection::Inbound {
            ctx.peer = session.req_header().headers.get(METADATA_HEADER).and_then(peer::decode);
        }
    }

    /// Outbound to the mesh: introduce ourselves; otherwise: never pass a caller's metadata on.
    pub(super) fn write_request_metadata(&self, upstream: &mut RequestHeader, ctx: &RequestCtx, direction: TrafficDirection) -> Result<()> {
        upstream.remove_header(METADATA_HEADER);
        upstream.remove_header(METADATA_ID_HEADER);
        if direction == TrafficDirection::Outbound && Self::to_mesh_cluster(ctx) {
            let h = self.node_headers(&ctx.tables.snapshot);
            upstream.insert_header(METADATA_HEADER, h.value.clone())?;
            upstream.insert_header(METADATA_ID_HEADER, h.id.clone())?;
        }
        Ok(())
    }

    /// Outbound: read the destination's metadata off its answer, then hide it from the app.
    /// Inbound: answer with ours.
    pub(super) fn exchange_response_metadata(&self, resp: &mut ResponseHeader, ctx: &mut RequestCtx, direction: TrafficDirection) -> Result<()> {
        match direction {
            TrafficDirection::Outbound => {
                if let Some(v) = resp.headers.get(METADATA_HEADER) {
                    ctx.peer = peer::decode(v);
                }
                resp.remove_header(METADATA_HEADER);
                resp.remove_header(METADATA_ID_HEADER);
            }
            TrafficDirection::Inbound => {
                let h = self.node_headers(&ctx.tables.snapshot);
                resp.insert_header(METADATA_HEADER, h.value.clone())?;
                resp.insert_header(METADATA_ID_HEADER, h.id.clone())?;
            }
        }
        Ok(())
    }
}

/// Istio's labels for a finished request.
pub(super) fn request_labels<'a>(
    ctx: &'a RequestCtx,
    direction: TrafficDirection,
    code: &'a str,
    flags: &'a str,
    my_principal: Option<&'a str>,
) -> IstioLabels<'a> {
    let node = &ctx.tables.snapshot.node;
    let (service, service_name) = match &ctx.cluster {
        Some(Admitted(c)) => (&*c.service, &*c.service_name),
        None => ("unknown", "unknown"),
    };
    // Principals come from mTLS: ours when the connection used it, the peer's as verified.
    let (mine, theirs, security_policy) = match direction {
        TrafficDirection::Outbound => (my_principal.filter(|_| ctx.upstream_tls), ctx.upstream_identity.as_deref(), "unknown"),
        TrafficDirection::Inbound => {
            let conn = ctx.conn.as_ref();
            let tls = conn.is_some_and(|c| c.tls);
            (my_principal.filter(|_| tls), conn.and_then(|c| c.peer_identity.as_deref()), conn.map_or("none", ConnInfo::security_policy))
        }
    };
    let me = Workload::node(node, mine);
    let peer = Workload::peer(ctx.peer.as_ref(), theirs);
    let (source, destination) = match direction {
        TrafficDirection::Outbound => (me, peer),
        TrafficDirection::Inbound => (peer, me),
    };
    IstioLabels {
        direction,
        source,
        destination,
        service,
        service_name,
        protocol: if ctx.grpc { "grpc" } else { "http" },
        flags,
        security_policy,
        response_code: code,
        grpc_status: ctx.grpc_status.as_deref().unwrap_or("-"),
    }
}
