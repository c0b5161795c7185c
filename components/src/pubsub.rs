//! Pub/sub building block: publish to a topic, subscribe a handler that acknowledges by returning `Ok`.

pub mod conformance;
pub mod in_memory;
#[cfg(feature = "pubsub-jetstream")]
pub mod jetstream;
#[cfg(feature = "pubsub-mqtt3")]
pub mod mqtt3;
#[cfg(feature = "pubsub-rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "pubsub-redis")]
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::{BoxFuture, ComponentError};

/// The metadata key naming the consumer group; the loader fills it with the app id when a file
/// leaves it out, as daprd does.
pub const CONSUMER_ID: &str = "consumerID";

/// The metadata keys that name a consumer group (JetStream's durable and queue names take
/// precedence over the consumer id).
pub const GROUP_KEYS: [&str; 3] = [CONSUMER_ID, "durableName", "queueGroupName"];

/// The consumer group a workload in `lane` consumes in: one of its own, so every lane's copy of
/// an app sees every message (the runtime then delivers only its lane's, see oxidecar's lanes).
pub fn lane_consumer_id(consumer_id: &str, lane: &str) -> String {
    format!("{consumer_id}-lane-{lane}")
}

/// Optional capabilities of a pub/sub component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubFeature {
    MessageTtl,
    BulkPublish,
}

impl PubSubFeature {
    /// The capability name Dapr reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageTtl => "MESSAGE_TTL",
            Self::BulkPublish => "BULK_PUBLISH",
        }
    }
}

/// A message as it travels through the broker (already a CloudEvent unless raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub data: Bytes,
    pub content_type: String,
    pub metadata: HashMap<String, String>,
}

/// Called for each delivered message; `Ok` acknowledges it to the broker, `Err` leaves it to the
/// broker's redelivery (the runtime does its own retries and dead-lettering before answering).
pub type MessageHandler = Arc<dyn Fn(Message) -> BoxFuture<Result<(), ComponentError>> + Send + Sync>;

/// A publish/subscribe broker.
#[async_trait::async_trait]
pub trait PubSub: Send + Sync + 'static {
    /// Capabilities of this component.
    fn features(&self) -> &'static [PubSubFeature];

    /// Publishes one message.
    async fn publish(&self, msg: Message) -> Result<(), ComponentError>;

    /// Starts delivering messages of `topic` to `handler` until `cancel` fires or the component closes.
    async fn subscribe(
        &self,
        topic: &str,
        handler: MessageHandler,
        cancel: CancellationToken,
    ) -> Result<(), ComponentError>;

    /// Stops deliveries and releases backend resources; idempotent.
    async fn close(&self) {}
}
