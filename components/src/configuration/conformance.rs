//! The configuration conformance suite: get (some, all, missing), subscribe and see updates of the
//! subscribed keys only, unsubscribe. Updates go through the store's `set`, which writes the backend
//! the way an operator would.

use std::collections::HashMap;
use std::time::Duration;

use super::{ConfigItem, ConfigStore, ConfigSubscription};
use crate::conformance::{Outcome, ensure, ok};

/// How long a change may take to reach a subscriber.
const DELIVERY: Duration = Duration::from_secs(5);

async fn next(sub: &mut ConfigSubscription, case: &str) -> Result<HashMap<String, ConfigItem>, String> {
    match tokio::time::timeout(DELIVERY, sub.updates.recv()).await {
        Ok(Some(batch)) => Ok(batch),
        Ok(None) => Err(format!("{case}: the subscription ended")),
        Err(_) => Err(format!("{case}: nothing delivered within {DELIVERY:?}")),
    }
}

fn one(k: &str, v: &str) -> HashMap<String, String> {
    HashMap::from([(k.to_string(), v.to_string())])
}

/// Runs every case; keys start with `ns`. `subscribe_metadata` is passed to `subscribe` (stores
/// that need a channel name take it from there).
pub async fn run(s: &dyn ConfigStore, ns: &str, subscribe_metadata: &HashMap<String, String>) -> Outcome {
    let (a, b, missing) = (format!("{ns}-a"), format!("{ns}-b"), format!("{ns}-missing"));
    ok("set", s.set(one(&a, "1")).await)?;
    ok("set", s.set(one(&b, "2")).await)?;
    let got = ok("get", s.get(&[a.clone(), b.clone(), missing.clone()]).await)?;
    ensure(got.len() == 2, "get answers the existing keys only", &got)?;
    ensure(got.get(&a).is_some_and(|i| i.value == "1" && !i.version.is_empty()), "get answers value and version", &got)?;
    ensure(got.get(&b).is_some_and(|i| i.value == "2"), "get answers every asked key", &got)?;
    let all = ok("get all", s.get(&[]).await)?;
    ensure(all.contains_key(&a) && all.contains_key(&b) && !all.contains_key(&missing), "get without keys answers all items", all.len())?;
    let v1 = got[&a].version.clone();

    let mut sub = ok("subscribe", s.subscribe(vec![a.clone()], subscribe_metadata).await)?;
    ensure(!sub.id.is_empty(), "a subscription has an id", &sub.id)?;
    ok("update", s.set(one(&a, "3")).await)?;
    let batch = next(&mut sub, "update of a subscribed key").await?;
    let item = batch.get(&a).ok_or_else(|| format!("update delivered for {a}: {batch:?}"))?;
    ensure(item.value == "3" && item.version != v1, "the update carries the new value and a new version", item)?;
    ensure(batch.len() == 1, "only the subscribed key is delivered", &batch)?;

    ok("update other", s.set(one(&b, "x")).await)?;
    ok("update again", s.set(one(&a, "4")).await)?;
    let batch = next(&mut sub, "second update").await?;
    ensure(!batch.contains_key(&b), "changes of keys not subscribed are not delivered", &batch)?;
    ensure(batch.get(&a).is_some_and(|i| i.value == "4"), "every update is delivered in order", &batch)?;
    let now = ok("get", s.get(std::slice::from_ref(&a)).await)?;
    ensure(now.get(&a).is_some_and(|i| i.value == "4"), "get sees the update", &now)?;

    ensure(ok("unsubscribe", s.unsubscribe(&sub.id).await)?, "unsubscribe finds the subscription", &sub.id)?;
    ensure(!ok("unsubscribe", s.unsubscribe(&sub.id).await)?, "a second unsubscribe does not", &sub.id)?;
    match tokio::time::timeout(DELIVERY, async {
        while sub.updates.recv().await.is_some() {}
    })
    .await
    {
        Ok(()) => Ok(()),
        Err(_) => Err("unsubscribe: the update stream did not end".to_string()),
    }
}
