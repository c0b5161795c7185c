//! Binding declarations.

use super::Kind::{Bool, Duration, OneOf, Text};
use super::state::{POSTGRES_CONNECTION, REDIS_CONNECTION};
use super::{Key, TypeInfo};

/// Keys daprd reads for every binding.
pub const BINDING_COMMON: &[Key] = &[Key::optional(
    "direction",
    OneOf(&["input", "output", "input, output", "output, input"]),
    "",
    "Which way the binding is used; informational, the type decides.",
)];

/// `bindings.cron`.
pub static CRON: TypeInfo = TypeInfo {
    type_name: "bindings.cron",
    feature: "",
    summary: "Input binding that posts an empty event to the app on a fixed interval.",
    keys: &[BINDING_COMMON, &[
        Key::required("schedule", Text, "`@every <duration>`, e.g. `@every 15s`."),
        Key::optional("route", Text, "", "HTTP path events are posted to; default `/<component name>`."),
    ]],
    capabilities: &["INPUT_BINDING"],
    free_form: None,
};

/// `bindings.localstorage`.
pub static LOCAL_STORAGE: TypeInfo = TypeInfo {
    type_name: "bindings.localstorage",
    feature: "",
    summary: "Output binding on a local directory: operations `create`, `get`, `list`, `delete` with request metadata `fileName`.",
    keys: &[BINDING_COMMON, &[Key::required("rootPath", Text, "Directory the files live in.")]],
    capabilities: &["OUTPUT_BINDING", "create", "get", "list", "delete"],
    free_form: None,
};

/// `bindings.http`.
pub static HTTP: TypeInfo = TypeInfo {
    type_name: "bindings.http",
    feature: "http-binding",
    summary: "Output binding that sends an HTTP request to `url` + request metadata `path`; the other request metadata become headers; the response metadata carry `statusCode`, `status` and the response headers.",
    keys: &[BINDING_COMMON, &[
        Key::required("url", Text, "Base URL (`http://host:port/base`)."),
        Key::optional("responseTimeout", Duration, "30s", "oxidecar: deadline of one request, connecting included."),
        Key::optional("errorIfNot2XX", Bool, "true", "Fail the call when the response status is not 2xx."),
        Key::optional("maxResponseBodySize", Text, "100Mi", "Largest response body read (bytes, or with `Ki`/`Mi`/`Gi`)."),
        Key::optional("securityToken", Text, "", "Token sent in `securityTokenHeader` on every request; use a `secretKeyRef`."),
        Key::optional("securityTokenHeader", Text, "", "Header carrying `securityToken`."),
        Key::accepted("MTLSRootCA", Text, "mTLS root CA; accepted, `https` URLs are not supported by this build."),
        Key::accepted("MTLSClientCert", Text, "mTLS client certificate; accepted, not used."),
        Key::accepted("MTLSClientKey", Text, "mTLS client key; accepted, not used."),
        Key::accepted("MTLSRenegotiation", Text, "TLS renegotiation; accepted, not used."),
    ]],
    capabilities: &["OUTPUT_BINDING", "create", "get", "head", "post", "put", "patch", "delete", "options", "trace"],
    free_form: None,
};

/// `bindings.redis`.
pub static REDIS: TypeInfo = TypeInfo {
    type_name: "bindings.redis",
    feature: "redis",
    summary: "Output binding on Redis strings: `create` (SET, request metadata `key`, optional `ttlInSeconds`), `get`, `delete`.",
    keys: &[BINDING_COMMON, REDIS_CONNECTION],
    capabilities: &["OUTPUT_BINDING", "create", "get", "delete"],
    free_form: None,
};

/// `bindings.postgresql`.
pub static POSTGRESQL: TypeInfo = TypeInfo {
    type_name: "bindings.postgresql",
    feature: "postgres",
    summary: "Output binding running SQL: `exec` and `query` with request metadata `sql` and `params` (a JSON array for `$1`, `$2`, ...); `query` answers the rows as a JSON array of arrays; `close` drops the connection.",
    keys: &[BINDING_COMMON, POSTGRES_CONNECTION],
    capabilities: &["OUTPUT_BINDING", "exec", "query", "close"],
    free_form: None,
};

/// Binding declarations.
pub const ALL: &[&TypeInfo] = &[&CRON, &LOCAL_STORAGE, &HTTP, &REDIS, &POSTGRESQL];
