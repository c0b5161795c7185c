//! Helpers the per-block conformance suites share: a case either holds or fails with its name and
//! what was seen.

/// `Ok`, or the first failed case with what it saw.
pub type Outcome = Result<(), String>;

/// Fails `case` with `detail` unless `cond` holds.
pub fn ensure(cond: bool, case: &str, detail: impl std::fmt::Debug) -> Outcome {
    if cond { Ok(()) } else { Err(format!("{case}: {detail:?}")) }
}

/// The value of a call that must succeed; an error fails `case`.
pub fn ok<T>(case: &str, r: Result<T, crate::ComponentError>) -> Result<T, String> {
    r.map_err(|e| format!("{case}: unexpected error: {e}"))
}
