//! `sequencer.in-memory`: a counter per key in the process.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Segment, Sequencer, check, ending_at};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// The in-memory sequencer.
#[derive(Debug, Default)]
pub struct InMemorySequencer {
    counters: Mutex<HashMap<String, i64>>,
}

impl InMemorySequencer {
    /// Builds the sequencer (it takes no keys).
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        metadata.finish()?;
        Ok(Self::default())
    }
}

#[async_trait::async_trait]
impl Sequencer for InMemorySequencer {
    async fn segment(&self, key: &str, size: u32) -> Result<Segment, ComponentError> {
        check(key, size)?;
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let n = counters.entry(key.to_string()).or_insert(0);
        *n = n.checked_add(i64::from(size)).ok_or_else(|| ComponentError::InvalidRequest(format!("sequencer key {key:?} is exhausted")))?;
        Ok(ending_at(*n, size))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn passes_the_sequencer_conformance_suite() {
        if let Err(e) = crate::sequencer::conformance::run(Arc::new(InMemorySequencer::default()), "mem").await {
            panic!("sequencer.in-memory conformance: {e}");
        }
    }
}
