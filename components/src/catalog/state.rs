//! State store declarations, and the Redis connection keys every Redis-backed type shares.

use super::Kind::{Bool, Duration, Int, OneOf, Text};
use super::{Key, TypeInfo};

/// Keys daprd reads for every state store (the loader applies them, not the backend).
pub const STATE_COMMON: &[Key] = &[
    Key::optional(
        "keyPrefix",
        Text,
        "appid",
        "Key layout in the backend: `appid` stores `<app-id>||<key>`, `name` uses the component name, `none` stores the key as is, any other value is a custom prefix.",
    ),
    Key::accepted("actorStateStore", Bool, "Marks the store for actor state; accepted, actors are not served."),
];

/// Connection keys of every Redis-backed component (Dapr's names).
pub const REDIS_CONNECTION: &[Key] = &[
    Key::required("redisHost", Text, "`host:port` of the Redis server."),
    Key::optional("redisPassword", Text, "", "Password (`AUTH`); use a `secretKeyRef`."),
    Key::optional("redisUsername", Text, "", "ACL user name (Redis 6+)."),
    Key::optional("redisDB", Int, "0", "Database selected after connecting."),
    Key::optional("dialTimeout", Duration, "5s", "How long connecting may take."),
    Key::optional("readTimeout", Duration, "3s", "How long the answer to one command may take."),
    Key::optional(
        "timeout",
        Duration,
        "5s",
        "oxidecar: deadline of a whole operation including reconnecting; past it the call fails with UNAVAILABLE.",
    ),
    Key::accepted("writeTimeout", Text, "Accepted; the command deadline is `readTimeout`."),
    Key::only("enableTLS", Bool, "false", "TLS to Redis; this build speaks plain TCP, so only `false`."),
    Key::only("redisType", OneOf(&["node", "cluster"]), "node", "Only a single node (`node`) is supported."),
    Key::only("failover", Bool, "false", "Redis Sentinel; not supported, so only `false`."),
    Key::accepted("useEntraID", Bool, "Azure Entra ID auth; accepted, not used."),
    Key::accepted("clientCert", Text, "Client certificate for TLS; accepted, not used."),
    Key::accepted("clientKey", Text, "Client key for TLS; accepted, not used."),
    Key::accepted("sentinelMasterName", Text, "Sentinel master; accepted, not used."),
    Key::accepted("sentinelUsername", Text, "Sentinel user; accepted, not used."),
    Key::accepted("sentinelPassword", Text, "Sentinel password; accepted, not used."),
    Key::accepted("maxRetries", Text, "go-redis retry count; accepted (the connection manager reconnects on its own)."),
    Key::accepted("maxRetryBackoff", Text, "go-redis retry backoff; accepted."),
    Key::accepted("redisMaxRetries", Text, "go-redis retry count; accepted."),
    Key::accepted("redisMinRetryInterval", Text, "go-redis retry interval; accepted."),
    Key::accepted("redisMaxRetryInterval", Text, "go-redis retry interval; accepted."),
    Key::accepted("poolSize", Text, "go-redis pool size; accepted (one multiplexed connection is used)."),
    Key::accepted("poolTimeout", Text, "go-redis pool wait; accepted."),
    Key::accepted("maxConnAge", Text, "go-redis connection age; accepted."),
    Key::accepted("minIdleConns", Text, "go-redis idle connections; accepted."),
    Key::accepted("idleCheckFrequency", Text, "go-redis idle reaper; accepted."),
    Key::accepted("idleTimeout", Text, "go-redis idle timeout; accepted."),
    Key::accepted("redeliverInterval", Text, "Pub/sub redelivery interval Dapr lists for every Redis component; accepted."),
    Key::accepted("processingTimeout", Text, "Pub/sub processing timeout Dapr lists for every Redis component; accepted."),
];

/// Connection keys of PostgreSQL-backed components (Dapr's names).
pub const POSTGRES_CONNECTION: &[Key] = &[
    Key::required(
        "connectionString",
        Text,
        "libpq connection string (`host=... user=... dbname=...`) or URL (`postgres://user@host:5432/db`).",
    ),
    Key::optional("timeoutInSeconds", Int, "20", "Deadline of one operation, including connecting."),
    Key::accepted("maxConns", Int, "Pool size; accepted (one connection, re-established when lost)."),
    Key::accepted("connectionMaxIdleTime", Text, "Idle connection lifetime; accepted."),
    Key::accepted("queryExecMode", Text, "pgx query mode; accepted."),
    Key::only("useAWSIAM", Bool, "false", "AWS IAM auth; not supported, so only `false`."),
    Key::only("useAzureAD", Bool, "false", "Azure AD auth; not supported, so only `false`."),
];

/// `state.in-memory`.
pub static IN_MEMORY: TypeInfo = TypeInfo {
    type_name: "state.in-memory",
    feature: "",
    summary: "In-process key/value store: numeric ETags, TTL, atomic transactions, the state query API over JSON values. Data lives as long as the process.",
    keys: &[STATE_COMMON],
    capabilities: &["ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"],
    free_form: None,
};

/// `state.redis`.
pub static REDIS: TypeInfo = TypeInfo {
    type_name: "state.redis",
    feature: "redis",
    summary: "Dapr's Redis layout: each key a hash `{data, version}`, the version is the ETag, TTL is the key's expiry; writes and transactions are one Lua script.",
    keys: &[STATE_COMMON, REDIS_CONNECTION, &[
        Key::accepted("ttlInSeconds", Int, "Default TTL of every write; accepted, give `ttlInSeconds` per request."),
        Key::accepted("queryIndexes", Text, "RediSearch indexes for the query API; accepted, queries are not served."),
    ]],
    capabilities: &["ETAG", "TRANSACTIONAL", "TTL"],
    free_form: None,
};

/// `state.postgresql`.
pub static POSTGRESQL: TypeInfo = TypeInfo {
    type_name: "state.postgresql",
    feature: "postgres",
    summary: "Dapr's v1 table: `key text primary key, value jsonb, isbinary, insertdate, updatedate, expiredate`; the row's `xmin` is the ETag; expired rows are deleted periodically; state queries run as one SQL statement over the `jsonb` values.",
    keys: &[STATE_COMMON, POSTGRES_CONNECTION, &[
        Key::optional("tableName", Text, "state", "Table holding the state (created when missing)."),
        Key::optional("metadataTableName", Text, "dapr_metadata", "Table recording the last TTL cleanup (created when missing)."),
        Key::optional("cleanupIntervalInSeconds", Int, "3600", "How often expired rows are deleted; `0` or negative turns it off."),
    ]],
    capabilities: &["ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"],
    free_form: None,
};

/// State store declarations.
pub const ALL: &[&TypeInfo] = &[&IN_MEMORY, &REDIS, &POSTGRESQL];
