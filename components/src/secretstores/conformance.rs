//! The secret store conformance suite: get a known secret, a missing one is `NotFound` naming it,
//! and bulk get answers every secret exactly as get does.

use std::collections::HashMap;

use super::{Secret, SecretStore};
use crate::ComponentError;
use crate::conformance::{Outcome, ensure, ok};

/// Runs every case: `name` must hold `expected`, `missing` must not exist.
pub async fn run(s: &dyn SecretStore, name: &str, expected: &Secret, missing: &str) -> Outcome {
    let none = HashMap::new();
    let got = ok("get", s.get(name, &none).await)?;
    ensure(&got == expected, "get answers the secret", (&got, expected))?;
    let absent = s.get(missing, &none).await;
    ensure(matches!(&absent, Err(ComponentError::NotFound(m)) if m.contains(missing)), "a missing secret is NotFound naming it", &absent)?;
    let all = ok("bulk get", s.bulk_get(&none).await)?;
    ensure(all.get(name) == Some(expected), "bulk get includes the secret", all.get(name))?;
    ensure(!all.contains_key(missing), "bulk get has no missing secret", missing)?;
    for (n, secret) in &all {
        let one = ok("get of a bulk name", s.get(n, &none).await)?;
        ensure(&one == secret, "bulk get and get agree", n)?;
    }
    Ok(())
}
