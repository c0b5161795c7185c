//! Fixed-rate HTTP/1.1 load for latency benchmarks: `loadgen URL RATE SECONDS [CONNECTIONS]`.
//! Requests are scheduled at fixed intervals. A request the system under test held up (its
//! connection's previous answer came after this one was due) is measured from its scheduled start,
//! so a stall is counted against every request it delays (no coordinated omission). A request that
//! was only late because the timer woke up late (tokio's timer ticks in whole milliseconds) is
//! measured from when it was actually sent: the timer's granularity is the load generator's, not
//! the path's, and used to add up to a millisecond to every figure.
//! Prints one line: `requests=N errors=E p50_us=.. p90_us=.. p99_us=.. max_us=..`.

use std::time::{Duration, Instant};

use oxidecar_tests::{http1_client, send};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: loadgen URL RATE SECONDS [CONNECTIONS]";
    let url = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?.clone();
    let rate: f64 = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let seconds: f64 = args.get(3).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let connections: usize = args.get(4).map_or(Ok(16), |c| c.parse())?;
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let url = url.clone();
        let offset = Duration::from_secs_f64(c as f64 / rate);
        tasks.push(tokio::spawn(async move {
            let client = http1_client();
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut k = 0u32;
            let mut free_since = Instant::now();
            loop {
                let scheduled = start + offset + interval * k;
                k += 1;
                if (k as usize - 1) * connections + c >= total {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let from = if free_since > scheduled { scheduled } else { Instant::now() };
                match send(&client, "GET", &url, &[], "").await {
                    Ok(r) if r.status == 200 => lat.push(from.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
                free_since = Instant::now();
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "requests={} errors={} p50_us={} p90_us={} p99_us={} max_us={}",
        all.len(),
        errors,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        all.last().copied().unwrap_or(0)
    );
    Ok(())
}
