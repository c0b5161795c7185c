//! The lock conformance suite: exclusivity (also under concurrency), expiry, and owner-only unlock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LockStore, UnlockStatus};
use crate::ComponentError;
use crate::conformance::{Outcome, ensure, ok};

/// Runs every case; resources start with `ns` so runs against a shared server do not collide.
pub async fn run(store: Arc<dyn LockStore>, ns: &str) -> Outcome {
    let s = store.as_ref();
    let r = format!("{ns}-res");
    let long = Duration::from_secs(60);
    ensure(ok("lock", s.try_lock(&r, "alice", long).await)?, "a free lock is taken", &r)?;
    ensure(!ok("lock", s.try_lock(&r, "bob", long).await)?, "a held lock refuses another owner", &r)?;
    ensure(!ok("lock", s.try_lock(&r, "alice", long).await)?, "a held lock refuses its owner too (not re-entrant)", &r)?;
    let other = ok("unlock", s.unlock(&r, "bob").await)?;
    ensure(other == UnlockStatus::LockBelongsToOthers, "unlock by a non-owner is refused", other)?;
    ensure(!ok("lock", s.try_lock(&r, "bob", long).await)?, "a refused unlock leaves the lock held", &r)?;
    let mine = ok("unlock", s.unlock(&r, "alice").await)?;
    ensure(mine == UnlockStatus::Success, "the owner unlocks", mine)?;
    let gone = ok("unlock", s.unlock(&r, "alice").await)?;
    ensure(gone == UnlockStatus::LockDoesNotExist, "unlocking a free lock says it does not exist", gone)?;
    ensure(ok("lock", s.try_lock(&r, "bob", long).await)?, "an unlocked lock is free", &r)?;
    ok("cleanup", s.unlock(&r, "bob").await)?;

    // Expiry: a short lease frees itself.
    let e = format!("{ns}-expiry");
    ensure(ok("lock", s.try_lock(&e, "alice", Duration::from_millis(300)).await)?, "short lease taken", &e)?;
    ensure(!ok("lock", s.try_lock(&e, "bob", long).await)?, "short lease held before expiry", &e)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok("lock", s.try_lock(&e, "bob", long).await)? {
        ensure(Instant::now() < deadline, "an expired lease is free within 5 s", &e)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = ok("unlock", s.unlock(&e, "alice").await)?;
    ensure(late == UnlockStatus::LockBelongsToOthers, "the old owner cannot unlock after expiry and takeover", late)?;
    ok("cleanup", s.unlock(&e, "bob").await)?;

    // Exclusivity under contention: of 16 concurrent owners exactly one wins.
    let c = format!("{ns}-contended");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (st, c) = (store.clone(), c.clone());
        tasks.push(tokio::spawn(async move { st.try_lock(&c, &format!("owner-{i}"), Duration::from_secs(60)).await }));
    }
    let mut winners = 0;
    for t in tasks {
        if ok("lock", t.await.map_err(|e| ComponentError::Unavailable(e.to_string())).and_then(|r| r))? {
            winners += 1;
        }
    }
    ensure(winners == 1, "exactly one of 16 concurrent owners gets the lock", winners)?;
    for i in 0..16 {
        if ok("unlock", s.unlock(&c, &format!("owner-{i}")).await)? == UnlockStatus::Success {
            return Ok(());
        }
    }
    Err("contended: the winner could not unlock".to_string())
}
