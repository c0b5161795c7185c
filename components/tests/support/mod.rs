//! Shared helpers of the component integration tests: unique names, ports in the test range, a
//! resources directory, and a TCP relay in front of a shared server that a test can cut and
//! restore to simulate an outage without touching the server itself.
#![allow(dead_code)]

mod pubsub;
#[path = "../../../tests/src/relay.rs"]
mod relay;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use pubsub::{collector, msg, outage, received};
#[allow(unused_imports)]
pub use relay::{Relay, free_port, listen_in_range};

pub const REDIS: &str = "127.0.0.1:6379";
pub const POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A name no other test run uses (process id, time and a counter).
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A name usable as a SQL identifier (lowercase letters, digits, underscores).
pub fn unique_ident(tag: &str) -> String {
    unique(tag).replace('-', "_").to_lowercase()
}

/// A resources dir with one file; removed on drop.
pub struct ResourcesDir(pub PathBuf);

impl ResourcesDir {
    pub fn new(yaml: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("oxidecar-res"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("components.yaml"), yaml).expect("yaml");
        Self(dir)
    }
}

impl Drop for ResourcesDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it is `Ok` or `within` passes; answers the last result.
pub async fn eventually<T, E, F, Fut>(within: Duration, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let end = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
