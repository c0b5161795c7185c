//! Publishing (single and bulk).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use oxidecar_components::pubsub::{Message, PubSub};
use tonic::Code;

use super::{Api, find};
use crate::cloudevent::{self, CLOUDEVENTS_JSON, Target};
use crate::error::ApiError;
use crate::lanes::LANE_ATTRIBUTE;

/// Metadata key that publishes the bytes as they are, without a CloudEvent envelope.
pub const RAW_PAYLOAD: &str = "rawPayload";

/// One entry of a bulk publish.
#[derive(Debug, Clone)]
pub struct BulkEntry {
    pub entry_id: String,
    pub event: Bytes,
    pub content_type: String,
    pub metadata: HashMap<String, String>,
}

/// Whether a metadata map asks for raw payloads.
pub fn is_raw(metadata: &HashMap<String, String>) -> bool {
    metadata.get(RAW_PAYLOAD).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl Api {
    pub(crate) fn pubsub(&self, name: &str) -> Result<&Arc<dyn PubSub>, ApiError> {
        find(&self.stores.pubsub, name, "pubsub", "ERR_PUBSUB_NOT_FOUND")
    }

    /// Adds the lane of the publishing call (its headers or trace) to the publish metadata, unless
    /// the metadata names one already.
    pub fn with_lane(&self, headers: &http::HeaderMap, mut metadata: HashMap<String, String>) -> HashMap<String, String> {
        if !metadata.contains_key(LANE_ATTRIBUTE)
            && let Some(lane) = self.config.lanes.as_ref().and_then(|l| l.lane_of(headers))
        {
            metadata.insert(LANE_ATTRIBUTE.to_string(), lane);
        }
        metadata
    }

    /// Builds the broker message: a CloudEvent unless `rawPayload` is set. A lane (metadata
    /// `lane`) rides as the CloudEvent extension `lane`, or as broker metadata for raw payloads.
    fn message(&self, pubsub: &str, topic: &str, data: Bytes, content_type: &str, metadata: &HashMap<String, String>) -> Result<Message, ApiError> {
        let lane = metadata.get(LANE_ATTRIBUTE).filter(|l| !l.is_empty());
        if is_raw(metadata) {
            let mut broker_metadata = HashMap::from([(RAW_PAYLOAD.to_string(), "true".to_string())]);
            if let Some(lane) = lane {
                broker_metadata.insert(LANE_ATTRIBUTE.to_string(), lane.clone());
            }
            return Ok(Message { topic: topic.to_string(), data, content_type: content_type.to_string(), metadata: broker_metadata });
        }
        let mut ce = cloudevent::envelope(&Target { app_id: &self.app_id, pubsub, topic }, &data, content_type, metadata)?;
        if let (Some(lane), serde_json::Value::Object(m)) = (lane, &mut ce) {
            m.entry(LANE_ATTRIBUTE).or_insert_with(|| serde_json::Value::String(lane.clone()));
        }
        Ok(Message {
            topic: topic.to_string(),
            data: Bytes::from(ce.to_string()),
            content_type: CLOUDEVENTS_JSON.to_string(),
            metadata: HashMap::new(),
        })
    }

    fn check_topic(pubsub: &str, topic: &str) -> Result<(), ApiError> {
        if topic.is_empty() {
            return Err(ApiError::new(Code::InvalidArgument, "ERR_TOPIC_NAME_EMPTY", format!("pubsub {pubsub:?}: topic is empty")));
        }
        Ok(())
    }

    /// Publishes one event.
    pub async fn publish(&self, pubsub: &str, topic: &str, data: Bytes, content_type: &str, metadata: &HashMap<String, String>) -> Result<(), ApiError> {
        let ps = self.pubsub(pubsub)?;
        Self::check_topic(pubsub, topic)?;
        let msg = self.message(pubsub, topic, data, content_type, metadata)?;
        let what = || format!("pubsub {pubsub:?}: publish to topic {topic:?}");
        self.on_component(pubsub, "ERR_PUBSUB_PUBLISH_MESSAGE", what, msg, |msg| async move {
            ps.publish(msg).await.map_err(|e| ApiError::component(e, "ERR_PUBSUB_PUBLISH_MESSAGE", what()))
        })
        .await
    }

    /// Publishes several events; returns `(entry_id, error)` for each one that failed.
    pub async fn bulk_publish(&self, pubsub: &str, topic: &str, entries: Vec<BulkEntry>, metadata: &HashMap<String, String>) -> Result<Vec<(String, String)>, ApiError> {
        let ps = self.pubsub(pubsub)?;
        Self::check_topic(pubsub, topic)?;
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            if e.entry_id.is_empty() || !seen.insert(e.entry_id.as_str()) {
                return Err(ApiError::malformed(format!("pubsub {pubsub:?}: bulk publish entry id {:?} is empty or repeated", e.entry_id)));
            }
        }
        let mut failed = Vec::new();
        for e in entries {
            let mut md = metadata.clone();
            md.extend(e.metadata);
            let result = match self.message(pubsub, topic, e.event, &e.content_type, &md) {
                Ok(msg) => ps.publish(msg).await.map_err(|err| err.to_string()),
                Err(err) => Err(err.message),
            };
            if let Err(err) = result {
                failed.push((e.entry_id, err));
            }
        }
        Ok(failed)
    }
}
