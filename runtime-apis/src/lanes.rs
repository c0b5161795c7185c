//! Lanes in pub/sub. A message published while handling a lane-L request carries L (the CloudEvent
//! extension `lane`, or broker metadata `lane` for raw payloads). Every sidecar of a subscribing
//! app sees every message: a lane-L workload consumes in its own consumer group (the consumer id
//! suffixed with the lane), so base and lane copies are not competing replicas. Each then decides
//! alone, with the same view of the mesh, whether the message is its to deliver — exactly one of
//! them does: the lane-L copy for lane-L messages, the base copy for base messages and for lanes
//! the app has no workload in (fallback). Others acknowledge without delivering.

use http::{HeaderMap, HeaderName};

/// The CloudEvent extension attribute (and broker metadata key) carrying a message's lane.
pub const LANE_ATTRIBUTE: &str = "lane";

/// What the runtime needs from the mesh to carry lanes; the proxy implements it from its lane
/// settings, trace memory, node labels and endpoints.
pub trait LaneResolver: Send + Sync + std::fmt::Debug {
    /// The lane of a runtime API call: its lane header or baggage, else the lane its trace
    /// context was last seen in.
    fn lane_of(&self, headers: &HeaderMap) -> Option<String>;
    /// This sidecar's own workload lane (`None`: base).
    fn own_lane(&self) -> Option<String>;
    /// Whether app `app_id` has workloads in `lane` (its mesh cluster has lane endpoints).
    fn app_has_lane(&self, app_id: &str, lane: &str) -> bool;
    /// A lane-`lane` message is being handed to the app: calls it makes in the same trace
    /// (`traceparent`) stay in the lane.
    fn entering(&self, lane: &str, traceparent: Option<&str>);
    /// The header the lane is given to the app in.
    fn header(&self) -> HeaderName;
}

/// Whether the sidecar of app `app_id` in lane `own` delivers a message of lane `msg`.
pub fn delivers_here(own: Option<&str>, msg: Option<&str>, app_has_lane: impl FnOnce(&str) -> bool) -> bool {
    match (own, msg) {
        (Some(own), msg) => msg == Some(own),
        (None, None) => true,
        (None, Some(lane)) => !app_has_lane(lane),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_copy_delivers() {
        let has_dev = |l: &str| l == "dev";
        // A lane-dev message: the dev copy delivers, base skips.
        assert!(delivers_here(Some("dev"), Some("dev"), has_dev));
        assert!(!delivers_here(None, Some("dev"), has_dev));
        // A lane with no copy of this app: base delivers (fallback).
        assert!(delivers_here(None, Some("qa"), has_dev));
        // Base messages and other lanes never reach a lane copy.
        assert!(!delivers_here(Some("dev"), None, has_dev));
        assert!(!delivers_here(Some("dev"), Some("qa"), has_dev));
        assert!(delivers_here(None, None, |_| panic!("not asked for base messages")));
    }
}
