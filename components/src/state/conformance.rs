//! The state store conformance suite: the cases every backend must pass against its real server,
//! gated on its `features()`. Backends' tests call [`run`]; it answers the first failed case by name.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Concurrency, DeleteRequest, SetRequest, StateFeature, StateStore, TTL_EXPIRE_TIME, TransactionOp};
use crate::ComponentError;
use crate::conformance::{Outcome, ensure, ok};

fn set(key: &str, value: &str) -> SetRequest {
    SetRequest { key: key.to_string(), value: Bytes::from(value.to_string()), ..Default::default() }
}

fn del(key: &str) -> DeleteRequest {
    DeleteRequest { key: key.to_string(), ..Default::default() }
}

fn with_ttl(mut req: SetRequest, ttl: &str) -> SetRequest {
    req.metadata = HashMap::from([("ttlInSeconds".to_string(), ttl.to_string())]);
    req
}

/// Runs every case; keys start with `ns` so runs against a shared server do not collide.
pub async fn run(store: &dyn StateStore, ns: &str) -> Outcome {
    crud(store, ns).await?;
    bulk(store, ns).await?;
    if store.features().contains(&StateFeature::Etag) {
        etags(store, ns).await?;
    }
    if store.features().contains(&StateFeature::Transactional) {
        transactions(store, ns).await?;
    }
    if store.features().contains(&StateFeature::Ttl) {
        ttl(store, ns).await?;
    }
    if store.features().contains(&StateFeature::QueryApi) {
        queries(store, ns).await?;
    }
    Ok(())
}

async fn crud(s: &dyn StateStore, ns: &str) -> Outcome {
    let k = format!("{ns}-crud");
    ensure(ok("get missing", s.get(&k).await)?.is_none(), "get missing key is None", &k)?;
    ok("set", s.set(set(&k, "v1")).await)?;
    let item = ok("get", s.get(&k).await)?;
    ensure(item.as_ref().map(|i| i.value.clone()) == Some(Bytes::from("v1")), "get returns the value", &item)?;
    ok("overwrite", s.set(set(&k, "v2")).await)?;
    let item = ok("get", s.get(&k).await)?;
    ensure(item.map(|i| i.value) == Some(Bytes::from("v2")), "last write wins without etag", &k)?;
    ok("delete", s.delete(del(&k)).await)?;
    ensure(ok("get deleted", s.get(&k).await)?.is_none(), "deleted key is gone", &k)?;
    ok("delete missing", s.delete(del(&k)).await)?;
    let empty = s.set(set("", "x")).await;
    ensure(matches!(empty, Err(ComponentError::InvalidRequest(_))), "empty key is an invalid request", &empty)
}

async fn bulk(s: &dyn StateStore, ns: &str) -> Outcome {
    let (a, missing) = (format!("{ns}-bulk-a"), format!("{ns}-bulk-missing"));
    ok("set", s.set(set(&a, "A")).await)?;
    let got = s.bulk_get(&[a.clone(), missing.clone()]).await;
    ensure(got.len() == 2, "bulk get answers one result per key", &got)?;
    ensure(matches!(&got[0], Ok(Some(i)) if i.value == "A" && i.etag.is_some()), "bulk get finds a key with its etag", &got)?;
    ensure(matches!(&got[1], Ok(None)), "bulk get reports a missing key as None", &got)
}

async fn etags(s: &dyn StateStore, ns: &str) -> Outcome {
    let k = format!("{ns}-etag");
    ok("set", s.set(set(&k, "1")).await)?;
    let etag = ok("get", s.get(&k).await)?.and_then(|i| i.etag).ok_or("stored item has an etag")?;
    ok("set with matching etag", s.set(SetRequest { etag: Some(etag.clone()), ..set(&k, "2") }).await)?;
    let stale = s.set(SetRequest { etag: Some(etag.clone()), ..set(&k, "3") }).await;
    ensure(stale == Err(ComponentError::EtagMismatch { key: k.clone() }), "stale etag is a mismatch naming the key", &stale)?;
    let invalid = s.set(SetRequest { etag: Some("not-an-etag".into()), ..set(&k, "3") }).await;
    ensure(matches!(invalid, Err(ComponentError::EtagInvalid { .. })), "malformed etag is invalid", &invalid)?;
    let fw = |key: &str| SetRequest { concurrency: Concurrency::FirstWrite, ..set(key, "fw") };
    let first = s.set(fw(&k)).await;
    ensure(matches!(first, Err(ComponentError::EtagMismatch { .. })), "first-write on an existing key fails", &first)?;
    let new = format!("{ns}-etag-new");
    ok("first-write on a new key", s.set(fw(&new)).await)?;
    let stale_del = s.delete(DeleteRequest { etag: Some(etag), ..del(&k) }).await;
    ensure(matches!(stale_del, Err(ComponentError::EtagMismatch { .. })), "delete with a stale etag fails", &stale_del)?;
    let current = ok("get", s.get(&k).await)?.and_then(|i| i.etag);
    ok("delete with the current etag", s.delete(DeleteRequest { etag: current, ..del(&k) }).await)?;
    ensure(ok("get", s.get(&k).await)?.is_none(), "deleted with etag", &k)?;
    ok("cleanup", s.delete(del(&new)).await)
}

async fn transactions(s: &dyn StateStore, ns: &str) -> Outcome {
    let (a, b) = (format!("{ns}-tx-a"), format!("{ns}-tx-b"));
    ok("set", s.set(set(&a, "1")).await)?;
    let failing = vec![
        TransactionOp::Set(set(&b, "2")),
        TransactionOp::Delete(DeleteRequest { etag: Some("999999".into()), ..del(&a) }),
    ];
    let r = s.transact(failing).await;
    ensure(matches!(r, Err(ComponentError::EtagMismatch { .. })), "transaction with a stale etag fails", &r)?;
    ensure(ok("get", s.get(&b).await)?.is_none(), "nothing applied after a failed check", &b)?;
    ensure(ok("get", s.get(&a).await)?.is_some(), "nothing deleted after a failed check", &a)?;
    ok("transaction", s.transact(vec![TransactionOp::Set(set(&b, "2")), TransactionOp::Delete(del(&a))]).await)?;
    ensure(ok("get", s.get(&a).await)?.is_none(), "transaction deleted", &a)?;
    ensure(ok("get", s.get(&b).await)?.map(|i| i.value) == Some(Bytes::from("2")), "transaction wrote", &b)?;
    ok("cleanup", s.delete(del(&b)).await)
}

async fn ttl(s: &dyn StateStore, ns: &str) -> Outcome {
    let k = format!("{ns}-ttl");
    ok("ttl 0", s.set(with_ttl(set(&k, "v"), "0")).await)?;
    ensure(ok("get", s.get(&k).await)?.is_none(), "ttl 0 expires at once", &k)?;
    let bad = s.set(with_ttl(set(&k, "v"), "soon")).await;
    ensure(matches!(&bad, Err(ComponentError::InvalidRequest(m)) if m.contains("ttlInSeconds")), "bad ttl names ttlInSeconds", &bad)?;
    ok("ttl 3600", s.set(with_ttl(set(&k, "v"), "3600")).await)?;
    let item = ok("get", s.get(&k).await)?.ok_or("key with a long ttl is readable")?;
    let expire = item.metadata.get(TTL_EXPIRE_TIME);
    ensure(expire.is_some_and(|t| t.len() == 20 && t.ends_with('Z')), "get answers ttlExpireTime in RFC 3339", &item.metadata)?;
    ok("set without ttl", s.set(set(&k, "v")).await)?;
    let item = ok("get", s.get(&k).await)?.ok_or("key readable")?;
    ensure(!item.metadata.contains_key(TTL_EXPIRE_TIME), "a write without ttl clears the expiry", &item.metadata)?;
    ok("ttl 1", s.set(with_ttl(set(&k, "v"), "1")).await)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while ok("get", s.get(&k).await)?.is_some() {
        ensure(Instant::now() < deadline, "ttl 1 expires within 5 s", &k)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Query: filter on nested keys, sort, pages with a token, only keys under the prefix, only JSON.
async fn queries(s: &dyn StateStore, ns: &str) -> Outcome {
    let prefix = format!("{ns}-q||");
    let docs = [
        ("1", r#"{"person": {"org": "Dev Ops", "id": 1036}, "state": "WA"}"#),
        ("2", r#"{"person": {"org": "Finance", "id": 1071}, "state": "CA"}"#),
        ("3", r#"{"person": {"org": "Dev Ops", "id": 1042}, "state": "WA"}"#),
        ("4", r#"{"person": {"org": "Dev Ops", "id": 1007}, "state": "WA"}"#),
        ("5", "not json at all"),
    ];
    for (k, v) in docs {
        ok("set", s.set(set(&format!("{prefix}{k}"), v)).await)?;
    }
    let outside = format!("{ns}-q-outside");
    ok("set", s.set(set(&outside, docs[0].1)).await)?;
    let keys = |p: &super::query::QueryPage| p.results.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    let q = super::query::Query::parse(
        r#"{"filter": {"AND": [{"EQ": {"state": "WA"}}, {"IN": {"person.org": ["Dev Ops", "Legal"]}}]},
            "sort": [{"key": "person.id", "order": "DESC"}], "page": {"limit": 2}}"#,
    )
    .map_err(|e| e.to_string())?;
    let first = ok("query", s.query(&prefix, &q).await)?;
    ensure(keys(&first) == ["3", "1"], "query filters, sorts and cuts a page, keys without the prefix", &first)?;
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
    let same = json(&first.results[0].value).is_some() && json(&first.results[0].value) == json(docs[2].1.as_bytes());
    ensure(same && first.results[0].etag.is_some(), "query results carry the value and etag", &first)?;
    let token = first.token.clone().ok_or("a first page of a longer result has a token")?;
    let next = super::query::Query { offset: token.parse().map_err(|_| "token is an offset")?, ..q.clone() };
    let second = ok("query page 2", s.query(&prefix, &next).await)?;
    ensure(keys(&second) == ["4"] && second.token.is_none(), "the last page has the rest and no token", &second)?;
    let all = super::query::Query::parse(r#"{"filter": {"GT": {"person.id": 1040}}, "sort": [{"key": "person.id"}]}"#).map_err(|e| e.to_string())?;
    let got = ok("query GT", s.query(&prefix, &all).await)?;
    ensure(keys(&got) == ["3", "2"], "GT on a number, ascending", &got)?;
    for (k, _) in docs {
        ok("delete", s.delete(del(&format!("{prefix}{k}"))).await)?;
    }
    ok("delete", s.delete(del(&outside)).await)
}
