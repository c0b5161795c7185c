//! Lanes: a request's lane comes from a header (`x-lane` by default) or from W3C `baggage`
//! (`lane=...`). A request in lane L goes to the destination's lane-L endpoints when it has any,
//! otherwise to its base endpoints (those with no lane label); requests without a lane only ever
//! reach base endpoints, so a developer's copy never receives other people's traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use oxidecar_xds::model::Lanes;

/// Reads the lane of a request, if it carries one.
pub fn request_lane<'a>(config: &Lanes, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(v) = headers.get(config.header.as_str()).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v);
        }
    }
    headers
        .get_all(http::header::HeaderName::from_static("baggage"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|b| baggage_value(b, &config.baggage_key))
}

/// The value of `key` in a W3C baggage header (`k1=v1;prop,k2=v2`), without properties.
pub fn baggage_value<'a>(baggage: &'a str, key: &str) -> Option<&'a str> {
    baggage.split(',').find_map(|member| {
        let member = member.split(';').next()?.trim();
        let (k, v) = member.split_once('=')?;
        (k.trim() == key && !v.trim().is_empty()).then(|| v.trim())
    })
}

/// The trace id of a W3C `traceparent` (`00-<trace-id>-<span-id>-<flags>`).
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    trace_id_of(headers.get("traceparent")?.to_str().ok()?)
}

/// The trace id of a W3C `traceparent` value.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Remembers which lane a trace runs in, so calls an app makes while handling a lane-L request
/// stay in lane L even when the app forwards only the trace context. Entries expire; the map is
/// bounded.
pub struct LaneMemory {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, (String, Instant)>>,
    /// Mirrors `entries.len()`, so traced requests skip the lock while no lane was ever seen.
    len: AtomicUsize,
}

impl LaneMemory {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { ttl, max_entries, entries: Mutex::new(HashMap::new()), len: AtomicUsize::new(0) }
    }

    pub fn remember(&self, trace_id: &str, lane: &str, now: Instant) {
        let Ok(mut map) = self.entries.lock() else { return };
        if map.len() >= self.max_entries {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            self.len.store(map.len(), Ordering::Relaxed);
            if map.len() >= self.max_entries {
                return;
            }
        }
        map.insert(trace_id.to_string(), (lane.to_string(), now));
        self.len.store(map.len(), Ordering::Relaxed);
    }

    pub fn lane_of(&self, trace_id: &str, now: Instant) -> Option<String> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let map = self.entries.lock().ok()?;
        map.get(trace_id).filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl).map(|(lane, _)| lane.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn lane_from_header_or_baggage() {
        let cfg = Lanes::default();
        assert_eq!(request_lane(&cfg, &headers(&[("x-lane", "dev-alice")])), Some("dev-alice"));
        assert_eq!(request_lane(&cfg, &headers(&[("baggage", "userId=7, lane = qa-12;ttl=3,x=y")])), Some("qa-12"));
        assert_eq!(request_lane(&cfg, &headers(&[("x-lane", "a"), ("baggage", "lane=b")])), Some("a"), "header wins");
        assert_eq!(request_lane(&cfg, &headers(&[("baggage", "lanes=b")])), None);
        assert_eq!(request_lane(&cfg, &headers(&[("x-lane", " ")])), None);
        assert_eq!(request_lane(&cfg, &HeaderMap::new()), None);
    }

    #[test]
    fn trace_ids_and_lane_memory() {
        let h = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
        assert_eq!(trace_id(&h), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id(&headers(&[("traceparent", "00-xyz-1-01")])), None);
        let m = LaneMemory::new(Duration::from_secs(10), 2);
        let t = Instant::now();
        m.remember("a", "dev", t);
        assert_eq!(m.lane_of("a", t + Duration::from_secs(5)).as_deref(), Some("dev"));
        assert_eq!(m.lane_of("a", t + Duration::from_secs(11)), None, "expired");
        m.remember("b", "qa", t);
        m.remember("c", "qa", t);
        assert_eq!(m.lane_of("c", t), None, "bounded: full of live entries");
        m.remember("d", "qa", t + Duration::from_secs(20));
        assert_eq!(m.lane_of("d", t + Duration::from_secs(20)).as_deref(), Some("qa"), "expired entries make room");
    }
}
