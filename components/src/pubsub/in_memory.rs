//! `pubsub.in-memory`: fan-out to every subscriber of a topic, one ordered queue per subscriber.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Message, MessageHandler, PubSub, PubSubFeature};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Messages a slow subscriber may have queued before publishers wait for it.
const QUEUE_DEPTH: usize = 1024;

/// The in-memory broker.
#[derive(Debug)]
pub struct InMemoryPubSub {
    topics: Mutex<HashMap<String, Vec<mpsc::Sender<Message>>>>,
    tasks: TaskTracker,
    closed: CancellationToken,
}

impl Default for InMemoryPubSub {
    fn default() -> Self {
        Self { topics: Mutex::default(), tasks: TaskTracker::new(), closed: CancellationToken::new() }
    }
}

impl InMemoryPubSub {
    /// Builds the broker from component metadata (it takes no keys).
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        metadata.finish()?;
        Ok(Self::default())
    }

    fn senders(&self, topic: &str) -> Vec<mpsc::Sender<Message>> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let Some(subs) = topics.get_mut(topic) else {
            return Vec::new();
        };
        subs.retain(|s| !s.is_closed());
        subs.clone()
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
        for sender in self.senders(&msg.topic) {
            // A subscriber that went away between the snapshot and the send just misses the message.
            let _ = sender.send(msg.clone()).await;
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
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE_DEPTH);
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(topic.to_string())
            .or_default()
            .push(tx);
        let closed = self.closed.clone();
        let span = tracing::debug_span!("in_memory_subscriber", topic);
        self.tasks.spawn(
            async move {
                loop {
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = closed.cancelled() => break,
                        m = rx.recv() => match m { Some(m) => m, None => break },
                    };
                    if let Err(e) = handler(msg).await {
                        // In memory there is no broker redelivery: the runtime already retried.
                        tracing::debug!(error = %e, "message not acknowledged; dropped by in-memory broker");
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
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn fans_out_to_every_subscriber() {
        let ps = InMemoryPubSub::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..2 {
            let tx = tx.clone();
            let handler: MessageHandler = Arc::new(move |m: Message| {
                let tx = tx.clone();
                Box::pin(async move {
                    let _ = tx.send((i, m.data));
                    Ok(())
                })
            });
            ps.subscribe("t", handler, CancellationToken::new()).await.unwrap();
        }
        let msg = Message { topic: "t".into(), data: Bytes::from("hi"), content_type: String::new(), metadata: HashMap::new() };
        ps.publish(msg.clone()).await.unwrap();
        ps.publish(Message { topic: "other".into(), ..msg }).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap());
        }
        got.sort();
        assert_eq!(got, vec![(0, Bytes::from("hi")), (1, Bytes::from("hi"))]);
        ps.close().await;
        assert_eq!(ps.publish(Message { topic: "t".into(), data: Bytes::new(), content_type: String::new(), metadata: HashMap::new() }).await, Err(ComponentError::Closed));
    }
}
