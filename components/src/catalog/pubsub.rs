//! Pub/sub declarations.

use super::Kind::{Bool, Duration, Int, OneOf, Text};
use super::{Key, TypeInfo};

/// The consumer group every pub/sub type takes (the loader fills in the app id, as daprd does).
pub const CONSUMER: &[Key] = &[Key::optional(
    "consumerID",
    Text,
    "",
    "Consumer group. Unset: the app id, so replicas of one app share messages and other apps each get all of them.",
)];

/// `pubsub.in-memory`.
pub static IN_MEMORY: TypeInfo = TypeInfo {
    type_name: "pubsub.in-memory",
    feature: "",
    summary: "In-process broker: each consumer group gets every message of a topic once, shared among its subscribers; a failed message is offered again after 200 ms. Nothing survives the process.",
    keys: &[CONSUMER],
    capabilities: &["BULK_PUBLISH"],
    free_form: None,
};

/// Connection keys of `pubsub.redis`: Dapr's Redis keys, with the stream ones used (the shared
/// `REDIS_CONNECTION` group lists those as accepted-only for the other Redis types).
const REDIS_STREAMS_CONNECTION: &[Key] = &[
    Key::required("redisHost", Text, "`host:port` of the Redis server."),
    Key::optional("redisPassword", Text, "", "Password (`AUTH`); use a `secretKeyRef`."),
    Key::optional("redisUsername", Text, "", "ACL user name (Redis 6+)."),
    Key::optional("redisDB", Int, "0", "Database selected after connecting."),
    Key::optional("dialTimeout", Duration, "5s", "How long connecting may take."),
    Key::optional("readTimeout", Duration, "3s", "How long the answer to one command may take."),
    Key::optional("timeout", Duration, "5s", "oxidecar: deadline of a publish, ack or claim including reconnecting; past it a publish fails with UNAVAILABLE."),
    Key::only("enableTLS", Bool, "false", "TLS to Redis; this build speaks plain TCP, so only `false`."),
    Key::only("redisType", OneOf(&["node", "cluster"]), "node", "Only a single node (`node`) is supported."),
    Key::only("failover", Bool, "false", "Redis Sentinel; not supported, so only `false`."),
    Key::only("useEntraID", Bool, "false", "Azure Entra ID auth; not supported, so only `false`."),
    Key::accepted("clientCert", Text, "Client certificate for TLS; accepted, not used."),
    Key::accepted("clientKey", Text, "Client key for TLS; accepted, not used."),
    Key::accepted("writeTimeout", Text, "Accepted; the command deadline is `readTimeout`."),
    Key::accepted("sentinelMasterName", Text, "Sentinel master; accepted, not used."),
    Key::accepted("sentinelUsername", Text, "Sentinel user; accepted, not used."),
    Key::accepted("sentinelPassword", Text, "Sentinel password; accepted, not used."),
    Key::accepted("redisMaxRetries", Text, "go-redis retry count; accepted."),
    Key::accepted("redisMinRetryInterval", Text, "go-redis retry interval; accepted."),
    Key::accepted("redisMaxRetryInterval", Text, "go-redis retry interval; accepted."),
    Key::accepted("poolSize", Text, "go-redis pool size; accepted (one multiplexed connection plus one per subscription)."),
    Key::accepted("poolTimeout", Text, "go-redis pool wait; accepted."),
    Key::accepted("maxConnAge", Text, "go-redis connection age; accepted."),
    Key::accepted("minIdleConns", Text, "go-redis idle connections; accepted."),
    Key::accepted("idleCheckFrequency", Text, "go-redis idle reaper; accepted."),
    Key::accepted("idleTimeout", Text, "go-redis idle timeout; accepted."),
];

/// `pubsub.redis`.
pub static REDIS: TypeInfo = TypeInfo {
    type_name: "pubsub.redis",
    feature: "pubsub-redis",
    summary: "Redis Streams as daprd lays them out: a topic is a stream, a message an entry with a `data` field; each consumer ID is a consumer group; entries are XACKed after the app accepted them, and pending ones are claimed again (XAUTOCLAIM) after `processingTimeout`.",
    keys: &[CONSUMER, REDIS_STREAMS_CONNECTION, &[
        Key::optional("processingTimeout", Duration, "15s", "How long an entry may stay unacknowledged before it is delivered again; `0` turns redelivery off."),
        Key::optional("redeliverInterval", Duration, "60s", "How often pending entries are checked for redelivery; `0` turns redelivery off."),
        Key::optional("concurrency", Int, "10", "Messages handled at the same time per subscription."),
        Key::optional("queueDepth", Int, "100", "Entries read from the stream at once."),
        Key::optional("maxLenApprox", Int, "", "Trims each stream to about this many entries on publish (unbounded when unset)."),
        Key::optional("ackOnError", Bool, "false", "Acknowledge even when the app failed (no broker redelivery after the runtime's own retries)."),
        Key::only("streamTTL", Text, "", "Entry age limit; not supported (use `maxLenApprox`)."),
    ]],
    capabilities: &[],
    free_form: None,
};

/// `pubsub.jetstream`.
pub static JETSTREAM: TypeInfo = TypeInfo {
    type_name: "pubsub.jetstream",
    feature: "pubsub-jetstream",
    summary: "NATS JetStream: a topic is a subject captured by a stream (`streamName`, else the stream already capturing it, else one created and named after the topic); each subscription is a durable pull consumer `<durableName|queueGroupName|consumerID>-<topic>` shared by replicas; messages are acked after the app accepted them and NAKed when it failed. Publishes wait for the stream's acknowledgement (at most 5 s).",
    keys: &[CONSUMER, &[
        Key::required("natsURL", Text, "NATS server URL, `nats://host:port`."),
        Key::optional("name", Text, "dapr.io - pubsub.jetstream", "Connection name the server shows."),
        Key::optional("token", Text, "", "Token authentication."),
        Key::optional("streamName", Text, "", "Stream holding the topics; created, or extended with a topic it lacks."),
        Key::optional("durableName", Text, "", "Consumer name prefix (before `queueGroupName` and `consumerID`)."),
        Key::optional("queueGroupName", Text, "", "Consumer name prefix when `durableName` is unset."),
        Key::optional("deliverPolicy", OneOf(&["all", "last", "new", "sequence", "time"]), "all", "Where a new consumer starts (`time` is not supported)."),
        Key::optional("startSequence", Int, "", "First stream sequence with `deliverPolicy: sequence`."),
        Key::only("ackPolicy", OneOf(&["explicit", "all", "none"]), "explicit", "Messages are acked one by one after the app accepted them."),
        Key::optional("ackWait", Duration, "30s", "Time before an unanswered message is delivered again."),
        Key::optional("maxDeliver", Int, "-1", "Delivery attempts per message (`-1`: unlimited)."),
        Key::optional("backOff", Text, "", "Redelivery delays, comma-separated (`50ms, 1s, 10s`)."),
        Key::optional("maxAckPending", Int, "1000", "Unacknowledged messages the server lets the consumer hold."),
        Key::optional("replicas", Int, "1", "Replicas of a stream this component creates."),
        Key::optional("memoryStorage", Bool, "false", "Memory storage for streams this component creates."),
        Key::optional("concurrency", OneOf(&["single", "parallel"]), "single", "`single`: one message at a time per subscription; `parallel`: up to 64."),
        Key::accepted("flowControl", Bool, "Push-consumer flow control; accepted (subscriptions are pull consumers)."),
        Key::accepted("heartbeat", Text, "Push-consumer heartbeat; accepted."),
        Key::accepted("rateLimit", Int, "Push-consumer rate limit; accepted."),
        Key::only("startTime", Int, "", "Not supported; use `deliverPolicy`."),
        Key::only("jwt", Text, "", "JWT auth; not supported (use `token`)."),
        Key::only("seedKey", Text, "", "JWT auth; not supported (use `token`)."),
        Key::only("tls_client_cert", Text, "", "TLS client certificates; not supported."),
        Key::only("tls_client_key", Text, "", "TLS client certificates; not supported."),
        Key::only("domain", Text, "", "JetStream domains; not supported."),
        Key::only("apiPrefix", Text, "", "Custom JetStream API prefix; not supported."),
    ]],
    capabilities: &[],
    free_form: None,
};

/// `pubsub.mqtt3`.
pub static MQTT3: TypeInfo = TypeInfo {
    type_name: "pubsub.mqtt3",
    feature: "pubsub-mqtt3",
    summary: "MQTT 3.1.1 (Mosquitto and others) over one connection whose client id is the consumer ID. With QoS 1 and `cleanSession: false` the broker keeps the session, so messages published while the sidecar is away arrive when it returns. A message is acknowledged (PUBACK) after the app accepted it; a failed one is handed over again. Publishes wait for the broker's acknowledgement (at most 5 s). MQTT 3 has no headers (metadata does not travel) and no consumer groups: each consumer ID is one client.",
    keys: &[CONSUMER, &[
        Key::required("url", Text, "Broker address, `tcp://[user[:password]@]host[:port]` (port 1883 by default)."),
        Key::optional("qos", OneOf(&["0", "1", "2"]), "1", "Quality of service of publishes and subscriptions."),
        Key::optional("retain", Bool, "false", "Publish with the retain flag (the broker keeps the last message of each topic)."),
        Key::optional("cleanSession", Bool, "false", "Start every connection with a fresh session (messages sent while away are then lost)."),
        Key::only("caCert", Text, "", "TLS; not supported."),
        Key::only("clientCert", Text, "", "TLS; not supported."),
        Key::only("clientKey", Text, "", "TLS; not supported."),
    ]],
    capabilities: &[],
    free_form: None,
};

/// `pubsub.rabbitmq`.
pub static RABBITMQ: TypeInfo = TypeInfo {
    type_name: "pubsub.rabbitmq",
    feature: "pubsub-rabbitmq",
    summary: "RabbitMQ (AMQP 0-9-1) as daprd lays it out: a topic is an exchange, each subscription the queue `<consumerID>-<topic>` bound to it, so replicas compete and other consumer IDs each get every message. Deliveries are acked after the app accepted them; publishes wait for the broker's confirm (at most 5 s).",
    keys: &[CONSUMER, &[
        Key::optional("connectionString", Text, "", "`amqp://user:password@host:port/vhost`; or give `hostname`, `username`, `password`."),
        Key::optional("host", Text, "", "Older name of `connectionString`."),
        Key::optional("protocol", OneOf(&["amqp", "amqps"]), "amqp", "Scheme when `hostname` is used (`amqps` is not supported)."),
        Key::optional("hostname", Text, "", "Broker host (with `username` / `password`) when there is no connection string."),
        Key::optional("username", Text, "", "User with `hostname`."),
        Key::optional("password", Text, "", "Password with `hostname`."),
        Key::optional("durable", Bool, "false", "Durable exchanges and queues (they survive a broker restart)."),
        Key::optional("deletedWhenUnused", Bool, "true", "Queues are deleted when their last consumer leaves; set `false` so messages published while the sidecar is away wait for it."),
        Key::optional("autoAck", Bool, "false", "Let the broker consider a message acked on delivery (before the app saw it)."),
        Key::optional("deliveryMode", Int, "0", "`2` publishes persistent messages."),
        Key::optional("requeueInFailure", Bool, "false", "Put a message the app failed back on the queue (else it is dropped)."),
        Key::optional("prefetchCount", Int, "0", "Unacked deliveries per subscription (`0`: no limit)."),
        Key::optional("reconnectWait", Duration, "3s", "Longest pause between reconnection attempts."),
        Key::optional("reconnectWaitSeconds", Duration, "", "Older name of `reconnectWait`."),
        Key::optional("concurrency", OneOf(&["parallel", "single"]), "parallel", "`single` handles one delivery at a time per subscription."),
        Key::optional("concurrencyMode", OneOf(&["parallel", "single"]), "", "Older name of `concurrency`."),
        Key::optional("publisherConfirm", Bool, "true", "Wait for the broker's confirm on publish (oxidecar's default is `true`: a publish that returned is stored)."),
        Key::optional("exchangeKind", OneOf(&["fanout", "topic", "direct"]), "fanout", "Exchange type; with `topic` or `direct`, the `routingKey` publish metadata routes."),
        Key::optional("maxLen", Int, "", "Queue length limit (`x-max-length`)."),
        Key::optional("maxLenBytes", Int, "", "Queue size limit in bytes (`x-max-length-bytes`)."),
        Key::optional("ttlInSeconds", Int, "", "Message lifetime in the queue (`x-message-ttl`)."),
        Key::optional("clientName", Text, "", "Connection name shown by the broker."),
        Key::optional("heartBeat", Duration, "", "AMQP heartbeat interval."),
        Key::only("enableDeadLetter", Bool, "false", "Broker dead-lettering; use the subscription's `deadLetterTopic` instead."),
        Key::only("saslExternal", Bool, "false", "TLS client-certificate auth; not supported."),
        Key::only("caCert", Text, "", "TLS; not supported."),
        Key::only("clientCert", Text, "", "TLS; not supported."),
        Key::only("clientKey", Text, "", "TLS; not supported."),
    ]],
    capabilities: &[],
    free_form: None,
};

/// Pub/sub declarations.
pub const ALL: &[&TypeInfo] = &[&IN_MEMORY, &REDIS, &JETSTREAM, &MQTT3, &RABBITMQ];
