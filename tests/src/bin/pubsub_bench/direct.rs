//! The brokers' own clients doing the same publish→consume without the sidecar, with the crates
//! oxidecar's components use and the same broker layout: Redis Streams with a consumer group
//! (`XADD`, `XREADGROUP`, `XACK`), a JetStream stream with a durable pull consumer (publish waits
//! for the stream's ack; messages acked one by one), MQTT 3.1.1 at QoS 1 (rumqttc), and a RabbitMQ
//! fanout exchange with a queue per consumer (lapin, publisher confirms, per-delivery acks).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use redis::Value;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;

use crate::measure::{Publish, Recorder};

pub const REDIS: &str = "redis://127.0.0.1:6379";
pub const NATS: &str = "nats://127.0.0.1:4222";
pub const MQTT: (&str, u16) = ("127.0.0.1", 1883);
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const GROUP: &str = "bench-direct";

/// A publisher on a broker's own client.
#[derive(Clone)]
pub enum Direct {
    Redis { conn: redis::aio::MultiplexedConnection, topic: String },
    Nats { js: jetstream::Context, topic: String },
    Mqtt { client: AsyncClient, topic: String },
    Rabbit { channel: lapin::Channel, topic: String },
}

impl Publish for Direct {
    async fn publish(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::Redis { conn, topic } => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("XADD").arg(topic).arg("*").arg("data").arg(payload).query_async(&mut conn).await?;
            }
            Self::Nats { js, topic } => {
                js.publish(topic.clone(), payload.into()).await?.await?;
            }
            // Queued to the client's event loop; QoS 1 retransmits until the broker's PUBACK.
            Self::Mqtt { client, topic } => client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload).await?,
            Self::Rabbit { channel, topic } => {
                let confirm = channel.basic_publish(topic.as_str().into(), "".into(), BasicPublishOptions::default(), &payload, BasicProperties::default()).await?;
                if let lapin::Confirmation::Nack(_) = confirm.await? {
                    anyhow::bail!("rabbitmq refused the message");
                }
            }
        }
        Ok(())
    }
}

/// The consumer side of a direct run; stops (and removes what it created) on [`Consumer::stop`].
pub struct Consumer {
    task: JoinHandle<()>,
    cleanup: Option<Direct>,
}

impl Consumer {
    pub async fn stop(self) {
        match self.cleanup {
            Some(Direct::Redis { mut conn, topic }) => {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&topic).query_async(&mut conn).await;
            }
            Some(Direct::Nats { js, topic }) => {
                let _ = js.delete_stream(&topic).await;
            }
            Some(Direct::Rabbit { channel, topic }) => {
                let _ = channel.exchange_delete(topic.as_str().into(), ExchangeDeleteOptions::default()).await;
            }
            _ => {}
        }
        self.task.abort();
    }
}

/// Connects a publisher and starts a consumer reporting to `rec` for `broker` and `topic`.
pub async fn start(broker: &str, topic: &str, rec: Arc<Recorder>) -> anyhow::Result<(Direct, Consumer)> {
    let topic = topic.to_string();
    match broker {
        "redis" => redis_pair(topic, rec).await,
        "jetstream" => nats_pair(topic, rec).await,
        "mqtt" => mqtt_pair(topic, rec).await,
        "rabbitmq" => rabbit_pair(topic, rec).await,
        other => anyhow::bail!("no direct client for {other:?}"),
    }
}

/// Payloads (`data` fields) and ids of an `XREADGROUP` reply (RESP2 arrays).
fn stream_entries(v: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = v else { return out };
    for s in streams {
        let Value::Array(pair) = s else { continue };
        let Some(Value::Array(entries)) = pair.get(1) else { continue };
        for e in entries {
            let Value::Array(parts) = e else { continue };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (parts.first(), parts.get(1)) else { continue };
            let data = fields.chunks(2).find_map(|kv| match kv {
                [Value::BulkString(k), Value::BulkString(v)] if k == b"data" => Some(v.clone()),
                _ => None,
            });
            out.push((id.clone(), data.unwrap_or_default()));
        }
    }
    out
}

async fn redis_pair(topic: String, rec: Arc<Recorder>) -> anyhow::Result<(Direct, Consumer)> {
    let client = redis::Client::open(REDIS)?;
    let mut conn = client.get_multiplexed_async_connection().await.context("redis")?;
    let _: Value = redis::cmd("XGROUP").arg("CREATE").arg(&topic).arg(GROUP).arg("$").arg("MKSTREAM").query_async(&mut conn).await?;
    // Blocking reads get a connection of their own, with a deadline past the block time.
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
    let mut reader = client.get_multiplexed_async_connection_with_config(&cfg).await?;
    let (mut acker, t) = (conn.clone(), topic.clone());
    let task = tokio::spawn(async move {
        loop {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(GROUP).arg(GROUP).arg("COUNT").arg(100).arg("BLOCK").arg(1000).arg("STREAMS").arg(&t).arg(">");
            let Ok(reply) = cmd.query_async::<Value>(&mut reader).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let entries = stream_entries(&reply);
            if entries.is_empty() {
                continue;
            }
            let mut ack = redis::cmd("XACK");
            ack.arg(&t).arg(GROUP);
            for (id, data) in &entries {
                rec.deliver(data);
                ack.arg(id);
            }
            let _: Result<i64, _> = ack.query_async(&mut acker).await;
        }
    });
    let p = Direct::Redis { conn, topic };
    Ok((p.clone(), Consumer { task, cleanup: Some(p) }))
}

async fn nats_pair(topic: String, rec: Arc<Recorder>) -> anyhow::Result<(Direct, Consumer)> {
    let js = jetstream::new(async_nats::connect(NATS).await.context("nats")?);
    let config = stream::Config { name: topic.clone(), subjects: vec![topic.clone()], storage: stream::StorageType::File, ..Default::default() };
    let s = js.get_or_create_stream(config).await?;
    let pull = consumer::pull::Config { durable_name: Some(GROUP.to_string()), ack_policy: consumer::AckPolicy::Explicit, ..Default::default() };
    let c = s.get_or_create_consumer(GROUP, pull).await?;
    let mut messages = c.stream().max_messages_per_batch(64).messages().await?;
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            rec.deliver(&m.payload);
            let _ = m.ack().await;
        }
    });
    let p = Direct::Nats { js, topic };
    Ok((p.clone(), Consumer { task, cleanup: Some(p) }))
}

async fn mqtt_pair(topic: String, rec: Arc<Recorder>) -> anyhow::Result<(Direct, Consumer)> {
    let id = format!("{GROUP}-{}", std::process::id());
    let (sub, mut sub_loop) = AsyncClient::new(MqttOptions::new(format!("{id}-sub"), MQTT.0, MQTT.1), 1024);
    sub.subscribe(topic.as_str(), QoS::AtLeastOnce).await?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => rec.deliver(&p.payload),
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed).await.context("no SUBACK from mosquitto")??;
    let (client, mut pub_loop) = AsyncClient::new(MqttOptions::new(format!("{id}-pub"), MQTT.0, MQTT.1), 1024);
    let pub_task = tokio::spawn(async move {
        loop {
            if pub_loop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = task.await;
        pub_task.abort();
    });
    Ok((Direct::Mqtt { client, topic }, Consumer { task, cleanup: None }))
}

async fn rabbit_pair(topic: String, rec: Arc<Recorder>) -> anyhow::Result<(Direct, Consumer)> {
    let conn = Connection::connect(AMQP, ConnectionProperties::default()).await.context("rabbitmq")?;
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel.exchange_declare(topic.as_str().into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default()).await?;
    let ch = conn.create_channel().await?;
    let queue = format!("{GROUP}-{topic}");
    let opts = QueueDeclareOptions { auto_delete: true, ..Default::default() };
    ch.queue_declare(queue.as_str().into(), opts, FieldTable::default()).await?;
    ch.queue_bind(queue.as_str().into(), topic.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default()).await?;
    let mut deliveries = ch.basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    let task = tokio::spawn(async move {
        let _keep = (conn, ch);
        while let Some(Ok(d)) = deliveries.next().await {
            rec.deliver(&d.data);
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
    });
    let p = Direct::Rabbit { channel, topic };
    Ok((p.clone(), Consumer { task, cleanup: Some(p) }))
}
