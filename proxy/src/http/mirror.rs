//! Request mirroring (Envoy's request_mirror_policies): while the request streams to its own
//! upstream, a copy of its headers (authority with `-shadow` appended) and body (up to
//! [`MIRROR_BODY_LIMIT`]) is collected; once the body is complete the copy goes to each sampled
//! mirror cluster on a task of its own. The primary never waits for a copy and never sees its
//! answer; every copy's fate is counted in `oxidecar_mirror_requests_total`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use oxidecar_filters::route::CompiledRoute;
use oxidecar_xds::model::{ClusterKind, UpstreamProtocol};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::shared::Shared;
use crate::tables::{ClusterState, Tables};

/// Requests with a longer body are not mirrored (counted as `body_too_large`).
pub const MIRROR_BODY_LIMIT: usize = 64 * 1024;
/// Copies in flight at once; beyond it a copy is dropped (counted as `overflow`).
const MIRRORS_IN_FLIGHT: usize = 256;
/// A copy whose answer takes longer is abandoned (counted as `failed`).
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends mirror copies and owns their tasks.
pub struct Mirrors {
    connector: Arc<Connector>,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
}

impl Default for Mirrors {
    fn default() -> Self {
        Self { connector: Arc::new(Connector::new(None)), tasks: TaskTracker::new(), slots: Arc::new(Semaphore::new(MIRRORS_IN_FLIGHT)) }
    }
}

/// A request copy being collected while the original body streams upstream.
pub struct MirrorCopy {
    targets: Vec<Arc<ClusterState>>,
    header: RequestHeader,
    authority: String,
    body: BytesMut,
    too_large: bool,
    lane: Option<String>,
}

/// `host[:port]` → `host-shadow[:port]`, as Envoy names mirrored traffic.
fn shadow_authority(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) => {
            format!("{h}-shadow:{p}")
        }
        _ => format!("{authority}-shadow"),
    }
}

impl MirrorCopy {
    /// A copy for the route's mirrors this request was sampled for; `None` when there are none.
    pub(super) fn sample(route: &CompiledRoute, tables: &Tables, req: &RequestHeader, lane: Option<&str>) -> Option<Self> {
        let targets: Vec<Arc<ClusterState>> = route
            .mirrors
            .iter()
            .filter(|m| m.fraction >= 1.0 || rand::random::<f64>() < m.fraction)
            .map(|m| tables.cluster(m.cluster).clone())
            .collect();
        if targets.is_empty() {
            return None;
        }
        let mut header = req.clone();
        for name in &route.request_headers_to_remove {
            header.remove_header(name);
        }
        for (name, value) in &route.request_headers_to_add {
            let _ = header.insert_header(name.clone(), value.clone());
        }
        // Hop-by-hop framing belongs to each connection; the copy's own is set when it is sent.
        for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::TE, header::HOST, header::CONTENT_LENGTH] {
            header.remove_header(&name);
        }
        header.remove_header("keep-alive");
        header.remove_header("proxy-connection");
        Some(Self { targets, header, authority: shadow_authority(super::authority(req)), body: BytesMut::new(), too_large: false, lane: lane.map(str::to_owned) })
    }

    /// Adds a body chunk; past the limit the copy will not be sent.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        if self.body.len() + chunk.len() > MIRROR_BODY_LIMIT {
            self.too_large = true;
            self.body = BytesMut::new();
        } else {
            self.body.extend_from_slice(chunk);
        }
    }

    /// The body is being sent again (a retry replays it from the start).
    pub(super) fn restart(&mut self) {
        self.body.clear();
        self.too_large = false;
    }

    /// The request line and headers for `cluster`'s protocol.
    fn request(&self, h2: bool) -> Result<RequestHeader, String> {
        let mut h = self.header.clone();
        let pq = h.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let uri = if h2 { format!("http://{}{pq}", self.authority) } else { pq };
        h.set_uri(uri.parse::<http::Uri>().map_err(|e| format!("mirror uri: {e}"))?);
        if h2 {
            h.set_version(http::Version::HTTP_2);
        } else {
            h.set_version(http::Version::HTTP_11);
            h.insert_header(header::HOST, &self.authority).map_err(|e| e.to_string())?;
        }
        if !self.body.is_empty() || !matches!(h.method, http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS) {
            h.insert_header(header::CONTENT_LENGTH, self.body.len().to_string()).map_err(|e| e.to_string())?;
        }
        Ok(h)
    }
}

impl Mirrors {
    /// Sends `copy` to each of its clusters without waiting.
    pub(super) fn send(&self, shared: &Arc<Shared>, copy: MirrorCopy) {
        let counter = &shared.metrics.mirror_requests;
        if copy.too_large {
            for t in &copy.targets {
                counter.with_label_values(&[&t.name, "body_too_large"]).inc();
            }
            return;
        }
        let body = copy.body.clone().freeze();
        for target in &copy.targets {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                counter.with_label_values(&[&target.name, "overflow"]).inc();
                continue;
            };
            let request = copy.request(target.protocol == UpstreamProtocol::H2);
            let (shared, target, body, lane, connector) = (shared.clone(), target.clone(), body.clone(), copy.lane.clone(), self.connector.clone());
            self.tasks.spawn(async move {
                let _slot = slot;
                let sent = match request {
                    Ok(req) => tokio::time::timeout(MIRROR_TIMEOUT, send_one(&shared, &connector, &target, req, body, lane.as_deref()))
                        .await
                        .unwrap_or_else(|_| Err("no answer in time".to_string())),
                    Err(e) => Err(e),
                };
                let result = match sent {
                    Ok(status) => {
                        tracing::debug!(cluster = %target.name, status, "mirror answered");
                        "answered"
                    }
                    Err(e) => {
                        tracing::debug!(cluster = %target.name, error = %e, "mirror failed");
                        "failed"
                    }
                };
                shared.metrics.mirror_requests.with_label_values(&[&target.name, result]).inc();
            });
        }
    }
}

/// One copy to one endpoint of `cluster`; its answer is read and dropped.
async fn send_one(shared: &Shared, connector: &Connector, cluster: &ClusterState, req: RequestHeader, body: Bytes, lane: Option<&str>) -> Result<u16, String> {
    if cluster.kind.is_original_dst() || cluster.kind == ClusterKind::Blackhole {
        return Err(format!("cluster {} has no endpoints of its own to mirror to", cluster.name));
    }
    let i = cluster.pick(&[], lane, None).ok_or_else(|| format!("cluster {}: no healthy endpoint", cluster.name))?;
    let ep = &cluster.endpoints[i];
    let h2 = cluster.protocol == UpstreamProtocol::H2;
    let (peer, _) = super::endpoint_peer(shared, cluster, ep.address, ep.tls, h2)?;
    let (mut session, _reused) = connector.get_http_session(&peer).await.map_err(|e| e.to_string())?;
    session.write_request_header(Box::new(req)).await.map_err(|e| e.to_string())?;
    if !body.is_empty() {
        session.write_request_body(body, true).await.map_err(|e| e.to_string())?;
    }
    session.finish_request_body().await.map_err(|e| e.to_string())?;
    session.read_response_header().await.map_err(|e| e.to_string())?;
    let status = session.response_header().map_or(0, |r| r.status.as_u16());
    while session.read_response_body().await.map_err(|e| e.to_string())?.is_some() {}
    connector.release_http_session(session, &peer, None).await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::shadow_authority;

    #[test]
    fn shadow_goes_before_the_port() {
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
        assert_eq!(shadow_authority("[::1]:80"), "[::1]-shadow:80");
    }
}
