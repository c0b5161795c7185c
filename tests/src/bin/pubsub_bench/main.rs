//! Pub/sub benchmark client for `tests/bench/pubsub.sh`: publish→deliver throughput and latency
//! through a running `oxidecar` (this process is its gRPC app and publishes with `PublishEvent`),
//! beside each broker's own client doing the same publish→consume, in one run. Prints Markdown.
//!
//! `pubsub_bench run <sidecar-grpc-addr> <app-port> <topic> <seconds> [rate]` — the sidecar has
//! pub/sub components named `memory`, `redis`, `jetstream`, `mqtt` and `rabbitmq` and
//! `--app-port <app-port> --app-protocol grpc`.
//! `pubsub_bench cleanup <topic>` — removes the streams and exchanges both sides created (run it
//! after the sidecar stopped, or its subscriptions create them again).

mod app;
mod direct;
mod measure;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use measure::{Latency, Publish, Recorder, Throughput};

/// Components of the sidecar, in the order they run; all but `memory` have a direct client.
const BROKERS: &[&str] = &["memory", "redis", "jetstream", "mqtt", "rabbitmq"];
/// Fixed rate of the latency runs unless a broker cannot sustain twice that.
const DEFAULT_RATE: f64 = 1000.0;
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(30);

/// One client's results on one broker.
struct Row {
    throughput: Throughput,
    latency: Option<Latency>,
}

fn print_row(broker: &str, client: &str, rate: f64, r: &Row) {
    let t = &r.throughput;
    match &r.latency {
        Some(l) => println!(
            "| {broker} | {client} | {:.0} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            t.per_sec, l.p50_ms, l.p99_ms, l.max_ms, l.lost, t.errors + l.errors
        ),
        None => println!("| {broker} | {client} | {:.0} | — | — | — | — | — | {} |", t.per_sec, t.errors),
    }
}

/// Saturation, then (once the rate is known) the fixed-rate run, for one publisher.
async fn measure_both<A: Publish, B: Publish>(rec: &Arc<Recorder>, secs: f64, max_rate: f64, ox: &A, direct: Option<&B>) -> (f64, Row, Option<Row>) {
    let ox_t = measure::saturate(rec, ox, secs).await;
    let d_t = match direct {
        Some(d) => Some(measure::saturate(rec, d, secs).await),
        None => None,
    };
    // Well below saturation of the slower side, so queueing does not dominate.
    let slower = d_t.as_ref().map_or(ox_t.per_sec, |d| d.per_sec.min(ox_t.per_sec));
    let rate = max_rate.min(((slower / 2.0 / 50.0).floor() * 50.0).max(50.0));
    let ox_l = measure::paced(rec, ox, rate, secs).await;
    let d_row = match (direct, d_t) {
        (Some(d), Some(t)) => Some(Row { throughput: t, latency: Some(measure::paced(rec, d, rate, secs).await) }),
        _ => None,
    };
    (rate, Row { throughput: ox_t, latency: Some(ox_l) }, d_row)
}

async fn run(sidecar: &str, app_port: u16, topic: &str, secs: f64, max_rate: f64) -> anyhow::Result<()> {
    let rec = Recorder::new();
    let subs = BROKERS.iter().map(|b| (b.to_string(), topic.to_string())).collect();
    app::serve(app_port, rec.clone(), subs).await.context("app server")?;
    println!("| broker | client | delivered msgs/s (saturation) | latency run msgs/s | p50 ms | p99 ms | max ms | lost | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for broker in BROKERS {
        let ox = app::Sidecar::connect(sidecar, broker, topic, measure::PUBLISHERS).await.context("sidecar gRPC")?;
        if let Err(e) = measure::warm_up(&rec, &ox, SUBSCRIBE_WITHIN).await {
            println!("| {broker} | oxidecar | failed: {e} | | | | | | |");
            continue;
        }
        let direct = if *broker == "memory" {
            None
        } else {
            let (d, consumer) = direct::start(broker, &format!("{topic}-direct"), rec.clone()).await.with_context(|| format!("{broker} direct client"))?;
            measure::warm_up(&rec, &d, SUBSCRIBE_WITHIN).await.with_context(|| format!("{broker} direct client"))?;
            Some((d, consumer))
        };
        let (rate, ox_row, d_row) = measure_both(&rec, secs, max_rate, &ox, direct.as_ref().map(|(d, _)| d)).await;
        print_row(broker, "oxidecar gRPC", rate, &ox_row);
        if let Some(d) = &d_row {
            print_row(broker, "own client", rate, d);
            ratios.push((broker, ox_row, d_row.expect("direct row")));
        }
        if let Some((_, consumer)) = direct {
            consumer.stop().await;
        }
    }
    println!();
    println!("| broker | throughput oxidecar / own client | p50 oxidecar − own client (ms) | p99 oxidecar / own client |");
    println!("|---|---|---|---|");
    for (broker, ox, d) in ratios {
        let (Some(ol), Some(dl)) = (&ox.latency, &d.latency) else { continue };
        println!(
            "| {broker} | {:.2} | {:+.2} | {:.2} |",
            ox.throughput.per_sec / d.throughput.per_sec,
            ol.p50_ms - dl.p50_ms,
            ol.p99_ms / dl.p99_ms
        );
    }
    eprintln!("stale deliveries (earlier runs' messages): {}", rec.stale.load(std::sync::atomic::Ordering::Relaxed));
    Ok(())
}

/// Removes what the runs left on the brokers for `topic` (both sides).
async fn cleanup(topic: &str) -> anyhow::Result<()> {
    let topics = [topic.to_string(), format!("{topic}-direct")];
    let mut r = redis::Client::open(direct::REDIS)?.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL").arg(&topics).query_async(&mut r).await?;
    let js = async_nats::jetstream::new(async_nats::connect(direct::NATS).await?);
    let amqp = lapin::Connection::connect(direct::AMQP, lapin::ConnectionProperties::default()).await?;
    let ch = amqp.create_channel().await?;
    for t in &topics {
        let _ = js.delete_stream(t).await;
        let _ = ch.exchange_delete(t.as_str().into(), lapin::options::ExchangeDeleteOptions::default()).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "run", sidecar, port, topic, secs, rest @ ..] => {
            let rate = rest.first().map(|r| r.parse::<f64>()).transpose().context("rate")?.unwrap_or(DEFAULT_RATE);
            run(sidecar, port.parse().context("app port")?, topic, secs.parse().context("seconds")?, rate).await
        }
        [_, "cleanup", topic] => cleanup(topic).await,
        _ => bail!("usage: pubsub_bench run <sidecar-grpc-addr> <app-port> <topic> <seconds> [rate] | pubsub_bench cleanup <topic>"),
    }
}
