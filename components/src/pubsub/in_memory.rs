//! `pubsub.in-memory`: an in-process broker with consumer groups. Every group (one `consumerID`)
//! gets each message of a topic once; the subscribers of one group share its messages. A message
//! whose handler fails goes back to its group after a short pause, like a broker's redelivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{CONSUMER_ID, Message, MessageHandler, PubSub, PubSubFeature};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Messages a group may have queued before publishers wait for it.
const QUEUE_DEPTH: usize = 1024;
/// Pause before a message whose handler failed is offered to its group again.
pub const REDELIVERY_DELAY: Duration = Duration::from_millis(200);

/// One consumer group of one topic: a queue its subscribers take turns reading.
#[derive(Debug)]
struct Group {
    tx: mpsc::Sender<Message>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Message>>,
}

/// The broker state that several [`InMemoryPubSub`] handles may share (replicas of one app in tests).
#[derive(Debug, Default)]
pub struct Broker {
    /// topic → consumer id → group; a group lives as long as one of its subscribers does.
    topics: Mutex<HashMap<String, HashMap<String, Weak<Group>>>>,
}

impl Broker {
    fn groups(&self, topic: &str) -> Vec<Arc<Group>> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let Some(groups) = topics.get_mut(topic) else {
            return Vec::new();
        };
        groups.retain(|_, g| g.strong_count() > 0);
        groups.values().filter_map(Weak::upgrade).collect()
    }

    fn join(&self, topic: &str, consumer_id: &str) -> Arc<Group> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let groups = topics.entry(topic.to_string()).or_default();
        if let Some(g) = groups.get(consumer_id).and_then(Weak::upgrade) {
            return g;
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let group = Arc::new(Group { tx, rx: tokio::sync::Mutex::new(rx) });
        groups.insert(consumer_id.to_string(), Arc::downgrade(&group));
        group
    }
}

/// The in-memory broker as one component instance (one consumer id).
#[derive(Debug)]
pub struct InMemoryPubSub {
    broker: Arc<Broker>,
    consumer_id: String,
    tasks: TaskTracker,
    closed: CancellationToken,
}

impl Default for InMemoryPubSub {
    fn default() -> Self {
        Self::shared(Arc::default(), "")
    }
}

impl InMemoryPubSub {
    /// Builds the broker from component metadata (`consumerID` only).
    pub fn from_config(mut metadata: Metadata) -> Result<Self, MetadataError> {
        let consumer_id = metadata.take(CONSUMER_ID).unwrap_or_default();
        metadata.finish()?;
        Ok(Self::shared(Arc::default(), &consumer_id))
    }

    /// A handle on `broker` consuming as `consumer_id`.
    pub fn shared(broker: Arc<Broker>, consumer_id: &str) -> Self {
        Self { broker, consumer_id: consumer_id.to_string(), tasks: TaskTracker::new(), closed: CancellationToken::new() }
    }
}

#[async_trait::async_trait]
impl PubSub for InMemoryPubSub {
    fn features(&self) -> &'static [PubSubFeature] {
        &[PubSubFeature::BulkPublish]
    }

    async fn publish(&self, msg: Message) -> Result<(), ComponentError> {
        if self.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        for group in self.broker.groups(&msg.topic) {
            // The group's receiver lives inside the group, so the send fails only if it is gone.
            let _ = group.tx.send(msg.clone()).await;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        handler: MessageHandler,
        cancel: CancellationToken,
    ) -> Result<(), ComponentError> {
        if self.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        let group = self.broker.join(topic, &self.consumer_id);
        let (closed, tasks) = (self.closed.clone(), self.tasks.clone());
        let span = tracing::debug_span!("in_memory_subscriber", topic, consumer_id = %self.consumer_id);
        self.tasks.spawn(
            async move {
                loop {
                    let next = async { group.rx.lock().await.recv().await };
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = closed.cancelled() => break,
                        m = next => match m { Some(m) => m, None => break },
                    };
                    if let Err(e) = handler(msg.clone()).await {
                        tracing::debug!(error = %e, "message not acknowledged; offered to the group again");
                        let (group, closed) = (group.clone(), closed.clone());
                        tasks.spawn(async move {
                            tokio::select! {
                                _ = closed.cancelled() => {}
                                _ = tokio::time::sleep(REDELIVERY_DELAY) => { let _ = group.tx.send(msg).await; }
                            }
                        });
                    }
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    async fn close(&self) {
        self.closed.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pubsub::conformance::{self, Guarantees};

    #[tokio::test]
    async fn passes_the_pubsub_conformance_suite() {
        let broker = Arc::new(Broker::default());
        let open = move |consumer_id: String| {
            let broker = broker.clone();
            Box::pin(async move { Ok(Arc::new(InMemoryPubSub::shared(broker, &consumer_id)) as Arc<dyn PubSub>) }) as crate::BoxFuture<_>
        };
        let g = Guarantees { consumer_groups: true, durable: false };
        if let Err(e) = conformance::run(&open, g, "mem").await {
            panic!("pubsub.in-memory conformance: {e}");
        }
    }

    #[tokio::test]
    async fn closed_broker_refuses_work() {
        let ps = InMemoryPubSub::from_config(Metadata::new([(CONSUMER_ID.to_string(), "app".to_string())].into())).expect("valid");
        ps.close().await;
        let msg = Message { topic: "t".into(), data: Default::default(), content_type: String::new(), metadata: HashMap::new() };
        assert_eq!(ps.publish(msg).await, Err(ComponentError::Closed));
        let err = InMemoryPubSub::from_config(Metadata::new([("nope".to_string(), "1".to_string())].into())).expect_err("invalid metadata");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
