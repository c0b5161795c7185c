//! What every run shares: payloads that carry their scheduled send time, a recorder the deliveries
//! report to (through the sidecar's app callback or a broker's own consumer), and the two load
//! shapes — saturation with a bounded number of messages in flight, and a fixed rate.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Bytes per message (the timestamp header padded with `x`).
pub const PAYLOAD: usize = 128;
/// Messages published but not yet delivered, at most, during a saturation run.
pub const IN_FLIGHT: usize = 256;
/// Concurrent publish calls during a saturation run.
pub const PUBLISHERS: usize = 32;
/// Load before a saturation run's window opens (connections, JIT-free but caches and pools warm).
const WARM_UP: Duration = Duration::from_secs(1);
/// How long to wait for the last messages of a run.
const DRAIN: Duration = Duration::from_secs(10);

/// One run's counters; a delivery of another run's message only counts as stale.
pub struct Run {
    pub id: u32,
    pub delivered: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    record: bool,
    pub permits: Arc<Semaphore>,
}

/// Where deliveries are reported, on a clock shared with the publishers (same process).
pub struct Recorder {
    base: Instant,
    next: AtomicU32,
    current: RwLock<Arc<Run>>,
    pub stale: AtomicU64,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        let idle = Arc::new(Run { id: 0, delivered: AtomicU64::new(0), latencies: Mutex::default(), record: false, permits: Arc::new(Semaphore::new(0)) });
        Arc::new(Self { base: Instant::now(), next: AtomicU32::new(1), current: RwLock::new(idle), stale: AtomicU64::new(0) })
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Starts a new run; earlier runs' messages no longer count.
    pub fn begin(&self, record: bool, permits: usize) -> Arc<Run> {
        let run = Arc::new(Run {
            id: self.next.fetch_add(1, Ordering::SeqCst),
            delivered: AtomicU64::new(0),
            latencies: Mutex::new(Vec::with_capacity(1 << 16)),
            record,
            permits: Arc::new(Semaphore::new(permits)),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = run.clone();
        run
    }

    /// `<run>:<scheduled send time, ns>:` padded to [`PAYLOAD`] bytes.
    pub fn payload(run: u32, sched_ns: u64) -> Vec<u8> {
        let mut p = format!("{run}:{sched_ns}:").into_bytes();
        p.resize(PAYLOAD, b'x');
        p
    }

    /// Called for every delivered message, before it is acknowledged.
    pub fn deliver(&self, data: &[u8]) {
        let now = self.now_ns();
        let mut parts = data.splitn(3, |b| *b == b':');
        let num = |p: Option<&[u8]>| p.and_then(|p| std::str::from_utf8(p).ok()).and_then(|s| s.parse::<u64>().ok());
        let (Some(id), Some(sched)) = (num(parts.next()), num(parts.next())) else {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let run = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        if u64::from(run.id) != id {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return;
        }
        run.delivered.fetch_add(1, Ordering::Relaxed);
        run.permits.add_permits(1);
        if run.record {
            run.latencies.lock().unwrap_or_else(|e| e.into_inner()).push(now.saturating_sub(sched));
        }
    }
}

/// Publishes one payload and resolves when the broker (or sidecar) accepted it.
pub trait Publish: Clone + Send + Sync + 'static {
    fn publish(&self, payload: Vec<u8>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Polls until `run` saw `want` deliveries or `within` passed.
async fn wait_for(run: &Run, want: u64, within: Duration) {
    let end = Instant::now() + within;
    while run.delivered.load(Ordering::Relaxed) < want && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes until one message comes back (the subscription is live), up to `within`.
pub async fn warm_up<P: Publish>(rec: &Recorder, p: &P, within: Duration) -> anyhow::Result<()> {
    let run = rec.begin(false, 0);
    let end = Instant::now() + within;
    let mut last_error = None;
    while Instant::now() < end {
        if let Err(e) = p.publish(Recorder::payload(run.id, rec.now_ns())).await {
            last_error = Some(e);
        }
        wait_for(&run, 1, Duration::from_millis(200)).await;
        if run.delivered.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
    }
    anyhow::bail!("nothing delivered within {within:?} (last publish error: {last_error:?})")
}

/// Result of a saturation run.
pub struct Throughput {
    pub per_sec: f64,
    pub errors: u64,
}

/// Closed loop: [`PUBLISHERS`] concurrent publishes, at most [`IN_FLIGHT`] messages between publish
/// and delivery; delivered messages per second over `secs` after a warm-up.
pub async fn saturate<P: Publish>(rec: &Recorder, p: &P, secs: f64) -> Throughput {
    let run = rec.begin(false, IN_FLIGHT);
    let stop = Arc::new(AtomicBool::new(false));
    let (published, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..PUBLISHERS {
        let (p, run, stop, published, errors) = (p.clone(), run.clone(), stop.clone(), published.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(permit) = run.permits.acquire().await else { return };
                permit.forget();
                // The recorder's clock, not this task's: a payload needs only the run id here.
                match p.publish(Recorder::payload(run.id, 0)).await {
                    Ok(()) => published.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        run.permits.add_permits(1);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    let (d0, t0) = (run.delivered.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (d1, elapsed) = (run.delivered.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    run.permits.close();
    for t in tasks {
        let _ = t.await;
    }
    wait_for(&run, published.load(Ordering::Relaxed), DRAIN).await;
    Throughput { per_sec: (d1 - d0) as f64 / elapsed.as_secs_f64(), errors: errors.load(Ordering::Relaxed) }
}

/// Result of a fixed-rate run: latencies from the scheduled send time to the delivery.
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub lost: u64,
    pub errors: u64,
}

/// Open loop at `rate` messages per second for `secs`: message `i` is due at `start + i / rate`
/// and its latency counts from then, so a stalled publish does not hide the wait it causes
/// (no coordinated omission).
pub async fn paced<P: Publish>(rec: &Arc<Recorder>, p: &P, rate: f64, secs: f64) -> Latency {
    let run = rec.begin(true, 0);
    let total = (rate * secs).round() as u64;
    let start = rec.now_ns() + 10_000_000;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + (i as f64 * 1e9 / rate) as u64;
        let wait = due.saturating_sub(rec.now_ns());
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
        let (p, errors, id) = (p.clone(), errors.clone(), run.id);
        tasks.push(tokio::spawn(async move {
            if p.publish(Recorder::payload(id, due)).await.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let errors = errors.load(Ordering::Relaxed);
    wait_for(&run, total - errors, DRAIN).await;
    let mut lat = std::mem::take(&mut *run.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_unstable();
    let pct = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).map_or(f64::NAN, |ns| *ns as f64 / 1e6);
    let delivered = run.delivered.load(Ordering::Relaxed);
    Latency { p50_ms: pct(0.50), p99_ms: pct(0.99), max_ms: pct(1.0), lost: (total - errors).saturating_sub(delivered), errors }
}
