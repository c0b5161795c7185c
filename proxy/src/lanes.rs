//! The runtime's view of lanes (`LaneResolver`), from the mesh: the lane settings and trace memory
//! requests use, this workload's lane (its node label), and which lanes an app has workloads in
//! (endpoints with that lane label in the cluster its invocations are routed to).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName};
use oxidecar_filters::lane;
use oxidecar_runtime_apis::LaneResolver;

use crate::shared::Shared;
use crate::tables::ChainAction;

#[derive(Clone)]
pub struct MeshLanes(pub Arc<Shared>);

impl std::fmt::Debug for MeshLanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshLanes")
    }
}

impl LaneResolver for MeshLanes {
    fn lane_of(&self, headers: &HeaderMap) -> Option<String> {
        let tables = self.0.tables.load();
        if let Some(l) = lane::request_lane(&tables.snapshot.lanes, headers) {
            return Some(l.to_string());
        }
        lane::trace_id(headers).and_then(|t| self.0.lanes.lane_of(t, Instant::now()))
    }

    fn own_lane(&self) -> Option<String> {
        let tables = self.0.tables.load();
        let snapshot = &tables.snapshot;
        snapshot.node.labels.get(&snapshot.lanes.label).filter(|l| !l.is_empty()).cloned()
    }

    fn app_has_lane(&self, app_id: &str, lane: &str) -> bool {
        let tables = self.0.tables.load();
        let invocation = &tables.snapshot.invocation;
        let Some(listener) = tables.listeners.get(&invocation.listener) else { return false };
        let authority = invocation.authority(app_id);
        let no_headers = HeaderMap::new();
        listener
            .chains
            .iter()
            .filter_map(|c| match &c.action {
                ChainAction::Http { routes } => routes.find(authority, "/", &no_headers),
                ChainAction::Tcp { .. } => None,
            })
            .filter_map(|route| route.destination())
            .flat_map(|d| d.clusters())
            .any(|id| tables.cluster(id).lanes.contains(lane))
    }

    fn entering(&self, lane: &str, traceparent: Option<&str>) {
        if let Some(trace) = traceparent.and_then(lane::trace_id_of) {
            self.0.lanes.remember(trace, lane, Instant::now());
        }
    }

    fn header(&self) -> HeaderName {
        let tables = self.0.tables.load();
        HeaderName::from_bytes(tables.snapshot.lanes.header.as_bytes()).unwrap_or(HeaderName::from_static("x-lane"))
    }
}
