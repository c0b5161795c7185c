//! Distributed tracing: W3C `traceparent`/`tracestate` and B3 (multi-header and single `b3`)
//! propagation, head sampling, and finished spans handed to the OTLP exporter.
//!
//! Each proxy hop is one span: the incoming context (if any) is its parent, a new span id is
//! ours, and the upstream request carries our span id so the next hop is our child. A request
//! without a context starts a trace, sampled at `telemetry.tracing.sampling` percent; an incoming
//! sampling decision is kept. `x-request-id` is added when absent, as Envoy does.

pub mod export;
pub mod runtime;

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue};
use rand::Rng;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const REQUEST_ID: &str = "x-request-id";
const B3: &str = "b3";
const B3_TRACE: &str = "x-b3-traceid";
const B3_SPAN: &str = "x-b3-spanid";
const B3_PARENT: &str = "x-b3-parentspanid";
const B3_SAMPLED: &str = "x-b3-sampled";
const B3_FLAGS: &str = "x-b3-flags";

/// The trace a request belongs to, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    /// `None`: the sender left the decision to us.
    pub sampled: Option<bool>,
    pub tracestate: Option<String>,
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    (out != [0u8; N]).then_some(out)
}

/// A B3 trace id may be 64 bits: it is left-padded to 128.
fn b3_trace_id(s: &str) -> Option<[u8; 16]> {
    match s.len() {
        32 => hex_array(s),
        16 => hex_array::<8>(s).map(|low| {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }),
        _ => None,
    }
}

fn b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Reads the request's trace context: W3C first, then B3 single, then B3 multi.
pub fn extract(headers: &HeaderMap) -> Option<Incoming> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(tp) = get(TRACEPARENT) {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() >= 4
            && parts[0].len() == 2
            && parts[0] != "ff"
            && parts[3].len() == 2
            && let (Some(trace_id), Some(parent), Ok(flags)) = (hex_array(parts[1]), hex_array(parts[2]), u8::from_str_radix(parts[3], 16))
        {
            return Some(Incoming {
                trace_id,
                parent: Some(parent),
                sampled: Some(flags & 1 == 1),
                tracestate: get(TRACESTATE).filter(|s| !s.is_empty()).map(str::to_owned),
            });
        }
    }
    if let Some(b3) = get(B3) {
        let parts: Vec<&str> = b3.split('-').collect();
        if parts.len() == 1 {
            // `b3: 0` (deny) or `b3: 1`/`d`: a decision without ids.
            return b3_sampled(parts[0]).map(|s| Incoming { trace_id: new_trace_id(), parent: None, sampled: Some(s), tracestate: None });
        }
        if let (Some(trace_id), Some(parent)) = (b3_trace_id(parts[0]), hex_array(parts[1])) {
            return Some(Incoming { trace_id, parent: Some(parent), sampled: parts.get(2).and_then(|s| b3_sampled(s)), tracestate: None });
        }
    }
    let trace_id = get(B3_TRACE).and_then(b3_trace_id)?;
    let parent = get(B3_SPAN).and_then(hex_array);
    let sampled = if get(B3_FLAGS) == Some("1") { Some(true) } else { get(B3_SAMPLED).and_then(b3_sampled) };
    Some(Incoming { trace_id, parent, sampled, tracestate: None })
}

pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    while id == [0u8; 16] {
        rand::rng().fill(&mut id);
    }
    id
}

pub fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0u8; 8] {
        rand::rng().fill(&mut id);
    }
    id
}

/// This hop's place in the trace.
#[derive(Debug, Clone)]
pub struct Hop {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    pub tracestate: Option<String>,
    /// Whether the request arrived with B3 headers (then the upstream gets B3 too).
    pub b3: bool,
    pub start: SystemTime,
}

impl Hop {
    /// Joins the request's trace, or starts one sampled at `sampling_percent`.
    pub fn begin(headers: &HeaderMap, sampling_percent: f64) -> Hop {
        let incoming = extract(headers);
        let b3 = headers.contains_key(B3) || headers.contains_key(B3_TRACE);
        let decide = || sampling_percent >= 100.0 || (sampling_percent > 0.0 && rand::rng().random::<f64>() * 100.0 < sampling_percent);
        match incoming {
            Some(i) => Hop {
                trace_id: i.trace_id,
                span_id: new_span_id(),
                parent: i.parent,
                sampled: i.sampled.unwrap_or_else(decide),
                tracestate: i.tracestate,
                b3,
                start: SystemTime::now(),
            },
            None => Hop {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent: None,
                sampled: decide(),
                tracestate: None,
                b3,
                start: SystemTime::now(),
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The `traceparent` the next hop sees: our span as its parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", hex::encode(self.trace_id), hex::encode(self.span_id), if self.sampled { "01" } else { "00" })
    }

    /// Writes the context for the next hop: `traceparent` (+ `tracestate` as received), and the
    /// B3 headers when the request came with B3.
    pub fn inject(&self, mut set: impl FnMut(&'static str, HeaderValue), mut remove: impl FnMut(&'static str)) {
        let value = |s: String| HeaderValue::from_str(&s).ok();
        if let Some(v) = value(self.traceparent()) {
            set(TRACEPARENT, v);
        }
        if let Some(v) = self.tracestate.clone().and_then(value) {
            set(TRACESTATE, v);
        }
        if self.b3 {
            remove(B3);
            remove(B3_FLAGS);
            for (name, v) in [
                (B3_TRACE, Some(hex::encode(self.trace_id))),
                (B3_SPAN, Some(hex::encode(self.span_id))),
                (B3_PARENT, self.parent.map(hex::encode)),
                (B3_SAMPLED, Some(if self.sampled { "1" } else { "0" }.to_string())),
            ] {
                match v.and_then(value) {
                    Some(v) => set(name, v),
                    None => remove(name),
                }
            }
        }
    }
}

/// A random UUID v4 for `x-request-id`.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected(hop: &Hop) -> HeaderMap {
        let out = std::cell::RefCell::new(HeaderMap::new());
        hop.inject(|k, v| drop(out.borrow_mut().insert(k, v)), |k| drop(out.borrow_mut().remove(k)));
        out.into_inner()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn w3c_context_is_joined_and_passed_on_with_a_new_span() {
        let h = headers(&[(TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), (TRACESTATE, "vendor=x")]);
        let hop = Hop::begin(&h, 0.0);
        assert_eq!(hop.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hop.parent.map(hex::encode).as_deref(), Some("00f067aa0ba902b7"));
        assert!(hop.sampled, "the sender's decision wins over sampling 0");
        let out = injected(&hop);
        let tp = out[TRACEPARENT].to_str().expect("ascii");
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"), "{tp}");
        assert!(!tp.contains("00f067aa0ba902b7"), "a new span id: {tp}");
        assert_eq!(out[TRACESTATE], "vendor=x");
        assert!(!out.contains_key(B3_TRACE), "no B3 unless the request had it");
    }

    #[test]
    fn b3_multi_and_single_are_read_and_b3_is_written_back() {
        let h = headers(&[(B3_TRACE, "463ac35c9f6413ad"), (B3_SPAN, "a2fb4a1d1a96d312"), (B3_SAMPLED, "1")]);
        let hop = Hop::begin(&h, 0.0);
        assert_eq!(hop.trace_id_hex(), "0000000000000000463ac35c9f6413ad", "64-bit ids are padded");
        assert!(hop.sampled && hop.b3);
        let out = injected(&hop);
        assert_eq!(out[B3_PARENT], "a2fb4a1d1a96d312");
        assert_eq!(out[B3_SAMPLED], "1");
        assert_eq!(out[B3_SPAN].to_str().ok(), Some(hex::encode(hop.span_id).as_str()));

        let single = extract(&headers(&[(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")])).expect("b3");
        assert_eq!((hex::encode(single.trace_id).as_str(), single.sampled), ("80f198ee56343ba864fe8b2a57d3eff7", Some(false)));
        assert_eq!(extract(&headers(&[(B3, "0")])).map(|i| i.sampled), Some(Some(false)));
    }

    #[test]
    fn no_or_bad_context_starts_a_trace_sampled_by_rate() {
        assert!(extract(&headers(&[(TRACEPARENT, "00-00000000000000000000000000000000-00f067aa0ba902b7-01")])).is_none(), "all-zero trace id");
        assert!(extract(&headers(&[(TRACEPARENT, "garbage")])).is_none());
        let always = Hop::begin(&HeaderMap::new(), 100.0);
        assert!(always.sampled && always.parent.is_none());
        assert!(!Hop::begin(&HeaderMap::new(), 0.0).sampled);
        let id = new_request_id();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
    }
}
