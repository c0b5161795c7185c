//! CloudEvents 1.0 envelopes for published messages (JSON structured mode), as Dapr builds them.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use rand::RngCore;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Dapr's CloudEvent `type` for events it wraps.
pub const EVENT_TYPE: &str = "com.dapr.event.sent";
/// Content type of a structured-mode CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// Where an event is published.
pub struct Target<'a> {
    pub app_id: &'a str,
    pub pubsub: &'a str,
    pub topic: &'a str,
}

/// Wraps `data` in a CloudEvent, or completes it when it already is one.
pub fn envelope(t: &Target<'_>, data: &Bytes, content_type: &str, metadata: &HashMap<String, String>) -> Result<Value, ApiError> {
    let mut ce = if content_type.starts_with(CLOUDEVENTS_JSON) {
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(ApiError::malformed(format!(
                    "publish to {}/{}: data is declared {CLOUDEVENTS_JSON} but is not a JSON object",
                    t.pubsub, t.topic
                )));
            }
        }
    } else {
        let ct = if content_type.is_empty() { "text/plain" } else { content_type };
        let mut m = Map::new();
        m.insert("datacontenttype".into(), Value::String(ct.to_string()));
        match data_value(data, ct) {
            DataField::Data(v) => m.insert("data".into(), v),
            DataField::Base64(s) => m.insert("data_base64".into(), Value::String(s)),
        };
        m
    };
    let meta = |k: &str| metadata.get(k).filter(|v| !v.is_empty()).cloned();
    let mut default = |k: &str, v: String| {
        ce.entry(k.to_string()).or_insert(Value::String(v));
    };
    default("id", meta("cloudevent.id").unwrap_or_else(new_id));
    default("source", meta("cloudevent.source").unwrap_or_else(|| t.app_id.to_string()));
    default("type", meta("cloudevent.type").unwrap_or_else(|| EVENT_TYPE.to_string()));
    default("specversion", "1.0".to_string());
    default("datacontenttype", "application/json".to_string());
    default("time", rfc3339_now());
    let traceparent = meta("traceparent").unwrap_or_else(new_traceparent);
    default("traceid", traceparent.clone());
    default("traceparent", traceparent);
    if let Some(ts) = meta("tracestate") {
        default("tracestate", ts);
    }
    ce.insert("topic".into(), Value::String(t.topic.to_string()));
    ce.insert("pubsubname".into(), Value::String(t.pubsub.to_string()));
    Ok(Value::Object(ce))
}

/// A CloudEvent for a raw (non-CloudEvent) message, as delivered to `rawPayload` subscribers:
/// the bytes travel base64-encoded in `data_base64`.
pub fn wrap_raw(t: &Target<'_>, data: &Bytes) -> Value {
    envelope(t, data, "application/octet-stream", &HashMap::new()).unwrap_or(Value::Null)
}

enum DataField {
    Data(Value),
    Base64(String),
}

fn data_value(data: &Bytes, ct: &str) -> DataField {
    if ct.contains("json")
        && let Ok(v) = serde_json::from_slice::<Value>(data) {
            return DataField::Data(v);
        }
    match std::str::from_utf8(data) {
        Ok(s) if ct.starts_with("text/") || ct.contains("json") || ct.contains("xml") => DataField::Data(Value::String(s.to_string())),
        _ => DataField::Base64(base64_encode(data)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random UUID v4.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn new_traceparent() -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("00-{}-{}-01", hex(&b[..16]), hex(&b[16..]))
}

fn rfc3339_now() -> String {
    oxidecar_components::state::rfc3339(SystemTime::now())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on a bad character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Target<'static> = Target { app_id: "app", pubsub: "pubsub", topic: "orders" };

    #[test]
    fn wraps_json_and_text() {
        let ce = envelope(&T, &Bytes::from(r#"{"n":1}"#), "application/json", &HashMap::new()).unwrap();
        assert_eq!(ce["data"]["n"], 1);
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["topic"], "orders");
        assert_eq!(ce["pubsubname"], "pubsub");
        assert_eq!(ce["source"], "app");
        assert_eq!(ce["type"], EVENT_TYPE);
        assert!(ce["traceparent"].as_str().unwrap().starts_with("00-"));
        assert_eq!(ce["id"].as_str().unwrap().len(), 36);
        let ce = envelope(&T, &Bytes::from("hi"), "", &HashMap::new()).unwrap();
        assert_eq!((ce["data"].as_str(), ce["datacontenttype"].as_str()), (Some("hi"), Some("text/plain")));
        let ce = envelope(&T, &Bytes::from_static(&[0xff, 0]), "application/octet-stream", &HashMap::new()).unwrap();
        assert_eq!(ce["data_base64"], "/wA=");
    }

    #[test]
    fn completes_an_existing_cloudevent() {
        let ce = envelope(&T, &Bytes::from(r#"{"id":"x","type":"t","data":1}"#), CLOUDEVENTS_JSON, &HashMap::new()).unwrap();
        assert_eq!((ce["id"].as_str(), ce["type"].as_str(), ce["topic"].as_str()), (Some("x"), Some("t"), Some("orders")));
        assert!(envelope(&T, &Bytes::from("nope"), CLOUDEVENTS_JSON, &HashMap::new()).is_err());
    }

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\x10"] {
            assert_eq!(base64_decode(&base64_encode(s)).unwrap(), s);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert!(rfc3339_now().ends_with('Z'));
    }
}
