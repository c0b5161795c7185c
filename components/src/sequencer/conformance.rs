//! The sequencer conformance suite: ids start at 1, grow strictly, segments do not overlap, and
//! concurrent callers never see the same id twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Segment, Sequencer};
use crate::ComponentError;
use crate::conformance::{Outcome, ensure, ok};

/// Runs every case; keys start with `ns` so runs against a shared server do not collide.
pub async fn run(seq: Arc<dyn Sequencer>, ns: &str) -> Outcome {
    let s = seq.as_ref();
    let k = format!("{ns}-seq");
    ensure(ok("first id", s.next_id(&k).await)? == 1, "the first id of a new key is 1", &k)?;
    ensure(ok("second id", s.next_id(&k).await)? == 2, "the next id is one more", &k)?;
    let seg = ok("segment", s.segment(&k, 10).await)?;
    ensure(seg == Segment { from: 3, to: 12 }, "a segment reserves the next ids", seg)?;
    ensure(ok("after segment", s.next_id(&k).await)? == 13, "ids after a segment skip it", &k)?;
    let other = format!("{ns}-other");
    ensure(ok("other key", s.next_id(&other).await)? == 1, "keys count independently", &other)?;
    let empty = s.next_id("").await;
    ensure(matches!(empty, Err(ComponentError::InvalidRequest(_))), "an empty key is an invalid request", &empty)?;
    let zero = s.segment(&k, 0).await;
    ensure(matches!(zero, Err(ComponentError::InvalidRequest(_))), "a segment of 0 ids is an invalid request", &zero)?;

    // 8 concurrent callers × 25 ids each: all 200 distinct, and each caller's ids strictly increase.
    let c = format!("{ns}-concurrent");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (seq, c) = (seq.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(25);
            for _ in 0..25 {
                ids.push(seq.next_id(&c).await?);
            }
            Ok::<_, ComponentError>(ids)
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        let ids = ok("concurrent", t.await.map_err(|e| ComponentError::Unavailable(e.to_string())).and_then(|r| r))?;
        ensure(ids.windows(2).all(|w| w[0] < w[1]), "each caller sees strictly increasing ids", &ids)?;
        all.extend(ids);
    }
    ensure(all.len() == 200, "200 concurrent ids are all distinct", all.len())?;
    ensure(all.first() == Some(&1) && all.last() == Some(&200), "concurrent ids are 1..=200 without gaps", (all.first(), all.last()))
}
