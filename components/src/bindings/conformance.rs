//! The output binding conformance suite: every declared operation is accepted, an unknown one is
//! refused by name, a write is read back, a request missing required metadata names the key, and
//! concurrent invocations all succeed. The backend's test supplies the requests that fit it.

use std::sync::Arc;

use bytes::Bytes;

use super::{BindingRequest, OutputBinding};
use crate::ComponentError;
use crate::conformance::{Outcome, ensure, ok};

/// Requests that exercise one binding.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Stores something (e.g. `create`, `post`, `exec` of an INSERT).
    pub write: BindingRequest,
    /// Reads it back; its answer's data must be `expected`.
    pub read: BindingRequest,
    pub expected: Bytes,
    /// A request lacking a required metadata key, and that key.
    pub missing: Option<(BindingRequest, &'static str)>,
}

/// Runs every case.
pub async fn run(b: Arc<dyn OutputBinding>, f: Fixture) -> Outcome {
    let ops = b.operations();
    ensure(!ops.is_empty(), "an output binding declares its operations", ops)?;
    ensure(ops.contains(&f.write.operation.as_str()) && ops.contains(&f.read.operation.as_str()), "the fixture's operations are declared", ops)?;
    let unknown = b.invoke(BindingRequest { operation: "no-such-operation".into(), ..Default::default() }).await;
    ensure(
        matches!(&unknown, Err(ComponentError::Unsupported { operation }) if operation == "no-such-operation"),
        "an unknown operation is refused by name",
        &unknown,
    )?;
    ok("write", b.invoke(f.write.clone()).await)?;
    let got = ok("read", b.invoke(f.read.clone()).await)?;
    ensure(got.data == f.expected, "a write is read back", (&got.data, &f.expected))?;
    if let Some((req, key)) = &f.missing {
        let r = b.invoke(req.clone()).await;
        ensure(matches!(&r, Err(ComponentError::InvalidRequest(m)) if m.contains(key)), "missing request metadata is named", &r)?;
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (b, req) = (b.clone(), f.read.clone());
        tasks.push(tokio::spawn(async move { b.invoke(req).await }));
    }
    for t in tasks {
        let r = ok("concurrent read", t.await.map_err(|e| ComponentError::Unavailable(e.to_string())).and_then(|r| r))?;
        ensure(r.data == f.expected, "concurrent reads all answer", &r.data)?;
    }
    Ok(())
}
