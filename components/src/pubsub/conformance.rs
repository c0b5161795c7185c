//! The pub/sub conformance suite: the cases every backend must pass against its real broker, gated
//! on the [`Guarantees`] the backend declares. Backends' tests call [`run`] with an opener that
//! builds a fresh component instance for a consumer id (a "replica" or a restarted sidecar); it
//! answers the first failed case by name.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{Message, MessageHandler, PubSub};
use crate::{BoxFuture, ComponentError};

type Outcome = Result<(), String>;

/// Builds a component instance consuming as the given consumer id.
pub type Opener = dyn Fn(String) -> BoxFuture<Result<Arc<dyn PubSub>, String>> + Send + Sync;

/// What a backend promises beyond at-least-once delivery and redelivery after a failed handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guarantees {
    /// Instances with the same consumer id share a topic's messages (each gets a part, none twice).
    pub consumer_groups: bool,
    /// Messages published while no instance of a consumer id runs reach it when it comes back.
    pub durable: bool,
}

/// How long a case waits for deliveries.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// What a subscriber saw: every delivery in order, including failed attempts.
#[derive(Default)]
struct Seen {
    deliveries: Mutex<Vec<String>>,
    acked: Mutex<Vec<String>>,
}

impl Seen {
    fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn deliveries(&self) -> Vec<String> {
        self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A handler recording into `seen`; it fails the first `fail_first` deliveries of each message and
/// spends `work` on each accepted one.
fn recorder(seen: Arc<Seen>, fail_first: usize, work: Duration) -> MessageHandler {
    Arc::new(move |m: Message| {
        let seen = seen.clone();
        Box::pin(async move {
            let body = String::from_utf8_lossy(&m.data).into_owned();
            let attempts = {
                let mut d = seen.deliveries.lock().unwrap_or_else(|e| e.into_inner());
                d.push(body.clone());
                d.iter().filter(|b| **b == body).count()
            };
            if attempts <= fail_first {
                return Err(ComponentError::Unavailable(format!("test handler fails attempt {attempts} of {body}")));
            }
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            seen.acked.lock().unwrap_or_else(|e| e.into_inner()).push(body);
            Ok(())
        })
    })
}

fn message(topic: &str, body: &str) -> Message {
    Message {
        topic: topic.to_string(),
        data: Bytes::from(body.to_string()),
        content_type: "text/plain".to_string(),
        metadata: HashMap::new(),
    }
}

async fn open(open: &Opener, consumer_id: &str, case: &str) -> Result<Arc<dyn PubSub>, String> {
    open(consumer_id.to_string()).await.map_err(|e| format!("{case}: open {consumer_id:?}: {e}"))
}

async fn publish_all(ps: &dyn PubSub, topic: &str, bodies: &[String], case: &str) -> Outcome {
    for b in bodies {
        ps.publish(message(topic, b)).await.map_err(|e| format!("{case}: publish {b:?}: {e}"))?;
    }
    Ok(())
}

async fn subscribe(ps: &dyn PubSub, topic: &str, handler: MessageHandler, case: &str) -> Result<CancellationToken, String> {
    let cancel = CancellationToken::new();
    ps.subscribe(topic, handler, cancel.clone()).await.map_err(|e| format!("{case}: subscribe {topic:?}: {e}"))?;
    Ok(cancel)
}

/// Waits until the union of what `seens` accepted covers `want`; answers that union.
async fn until_all(seens: &[&Seen], want: &[String], case: &str) -> Result<Vec<String>, String> {
    let want: HashSet<&String> = want.iter().collect();
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let got: Vec<String> = seens.iter().flat_map(|s| s.acked()).collect();
        let have: HashSet<&String> = got.iter().collect();
        if want.is_subset(&have) {
            return Ok(got);
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want.difference(&have).collect();
            return Err(format!("{case}: not delivered within {DELIVERY_DEADLINE:?}: {missing:?}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Runs every case; topic names and consumer ids start with `ns` so runs against a shared broker do
/// not collide.
pub async fn run(opener: &Opener, g: Guarantees, ns: &str) -> Outcome {
    at_least_once(opener, ns).await?;
    redelivery(opener, ns).await?;
    if g.consumer_groups {
        competing_consumers(opener, ns).await?;
    }
    if g.durable {
        survives_restart(opener, ns).await?;
    }
    Ok(())
}

async fn at_least_once(opener: &Opener, ns: &str) -> Outcome {
    let case = "at-least-once delivery";
    let topic = format!("{ns}-alo");
    let (a, b) = (open(opener, &format!("{ns}-alo-a"), case).await?, open(opener, &format!("{ns}-alo-b"), case).await?);
    let (seen_a, seen_b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let ca = subscribe(&*a, &topic, recorder(seen_a.clone(), 0, Duration::ZERO), case).await?;
    let cb = subscribe(&*b, &topic, recorder(seen_b.clone(), 0, Duration::ZERO), case).await?;
    let want = bodies(&topic, 20);
    publish_all(&*a, &topic, &want, case).await?;
    until_all(&[&seen_a], &want, &format!("{case} (group a)")).await?;
    until_all(&[&seen_b], &want, &format!("{case} (group b, a second consumer id gets every message too)")).await?;
    let other = format!("{ns}-alo-other");
    publish_all(&*a, &other, &bodies(&other, 2), case).await?;
    let last = bodies(&topic, 21).split_off(20);
    publish_all(&*a, &topic, &last, case).await?;
    until_all(&[&seen_a], &last, case).await?;
    let stray: Vec<_> = seen_a.acked().into_iter().filter(|m| m.starts_with(&other)).collect();
    if !stray.is_empty() {
        return Err(format!("{case}: a subscriber of {topic:?} got messages of {other:?}: {stray:?}"));
    }
    ca.cancel();
    cb.cancel();
    a.close().await;
    b.close().await;
    Ok(())
}

async fn redelivery(opener: &Opener, ns: &str) -> Outcome {
    let case = "redelivery after a failed handler";
    let topic = format!("{ns}-redeliver");
    let ps = open(opener, &format!("{ns}-redeliver"), case).await?;
    let seen = Arc::new(Seen::default());
    let cancel = subscribe(&*ps, &topic, recorder(seen.clone(), 1, Duration::ZERO), case).await?;
    let want = bodies(&topic, 3);
    publish_all(&*ps, &topic, &want, case).await?;
    until_all(&[&seen], &want, case).await?;
    let deliveries = seen.deliveries();
    for b in &want {
        let n = deliveries.iter().filter(|d| *d == b).count();
        if n < 2 {
            return Err(format!("{case}: {b:?} was delivered {n} time(s), expected a retry after the failure"));
        }
    }
    cancel.cancel();
    ps.close().await;
    Ok(())
}

async fn competing_consumers(opener: &Opener, ns: &str) -> Outcome {
    let case = "competing consumers in one group";
    let topic = format!("{ns}-compete");
    let group = format!("{ns}-compete");
    let (r1, r2) = (open(opener, &group, case).await?, open(opener, &group, case).await?);
    let (s1, s2) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    // Handlers take a moment, so neither replica can drain the topic alone before the other asks.
    let work = Duration::from_millis(20);
    let c1 = subscribe(&*r1, &topic, recorder(s1.clone(), 0, work), case).await?;
    let c2 = subscribe(&*r2, &topic, recorder(s2.clone(), 0, work), case).await?;
    let publisher = open(opener, &format!("{ns}-compete-pub"), case).await?;
    let want = bodies(&topic, 40);
    for chunk in want.chunks(4) {
        publish_all(&*publisher, &topic, chunk, case).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until_all(&[&s1, &s2], &want, case).await?;
    // Give stray duplicates a moment to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<String> = s1.acked().into_iter().chain(s2.acked()).collect();
    let unique: HashSet<&String> = got.iter().collect();
    if unique.len() != got.len() {
        return Err(format!("{case}: {} deliveries for {} messages: a message went to both replicas", got.len(), unique.len()));
    }
    let (n1, n2) = (s1.acked().len(), s2.acked().len());
    if n1 == 0 || n2 == 0 {
        return Err(format!("{case}: one replica got everything ({n1} and {n2})"));
    }
    c1.cancel();
    c2.cancel();
    for ps in [r1, r2, publisher] {
        ps.close().await;
    }
    Ok(())
}

async fn survives_restart(opener: &Opener, ns: &str) -> Outcome {
    let case = "no loss across a sidecar restart";
    let topic = format!("{ns}-restart");
    let consumer = format!("{ns}-restart");
    let first = open(opener, &consumer, case).await?;
    let seen = Arc::new(Seen::default());
    let cancel = subscribe(&*first, &topic, recorder(seen.clone(), 0, Duration::ZERO), case).await?;
    let warm = vec![format!("{topic}-warm")];
    publish_all(&*first, &topic, &warm, case).await?;
    until_all(&[&seen], &warm, case).await?;
    cancel.cancel();
    first.close().await;

    let publisher = open(opener, &format!("{ns}-restart-pub"), case).await?;
    let want = bodies(&topic, 5);
    publish_all(&*publisher, &topic, &want, &format!("{case} (while the subscriber is away)")).await?;

    let again = open(opener, &consumer, case).await?;
    let seen = Arc::new(Seen::default());
    let cancel = subscribe(&*again, &topic, recorder(seen.clone(), 0, Duration::ZERO), case).await?;
    until_all(&[&seen], &want, &format!("{case} (after reopening with the same consumer id)")).await?;
    cancel.cancel();
    again.close().await;
    publisher.close().await;
    Ok(())
}
