//! Reflection over the Envoy protos that `envoy-types` ships as a descriptor set: protobuf JSON
//! (config dumps) → typed messages, and the check that every set field of a message is known.

use std::sync::OnceLock;

use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;

use super::report::{Cx, Tr};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

/// Marks an `Any` whose type the descriptor set does not know (Istio's own filter configs such
/// as `stats.PluginConfig`): a JSON dump keeps its type URL inside a `StringValue`.
pub(crate) const UNKNOWN_PREFIX: &str = "oxidecar-unknown-type:";
pub(crate) const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// The Envoy descriptor pool, decoded once.
pub(crate) fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).expect("envoy-types ships a valid descriptor set"))
}

/// The message type an `Any` holds (the original one for placeholders made by [`from_json`]).
pub(crate) fn any_type(any: &Any) -> String {
    let url = if any.type_url == STRING_VALUE {
        match String::decode(any.value.as_slice()) {
            Ok(s) if s.starts_with(UNKNOWN_PREFIX) => s[UNKNOWN_PREFIX.len()..].to_string(),
            _ => any.type_url.clone(),
        }
    } else {
        any.type_url.clone()
    };
    url.rsplit('/').next().unwrap_or_default().to_string()
}

/// Decodes an `Any` into `M` when it holds `M`.
pub(crate) fn unpack<M: Message + Default + prost::Name>(any: &Any) -> Option<Result<M, prost::DecodeError>> {
    (any_type(any) == M::full_name()).then(|| M::decode(any.value.as_slice()))
}

/// Replaces every `Any` of a type the pool does not know with a placeholder naming that type.
fn mask_unknown_any(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(url)) = map.get("@type") {
                let name = url.rsplit('/').next().unwrap_or_default();
                if pool().get_message_by_name(name).is_none() {
                    let marker = format!("{UNKNOWN_PREFIX}{url}");
                    map.clear();
                    map.insert("@type".into(), Value::String(STRING_VALUE.into()));
                    map.insert("value".into(), Value::String(marker));
                    return;
                }
            }
            map.values_mut().for_each(mask_unknown_any);
        }
        Value::Array(items) => items.iter_mut().for_each(mask_unknown_any),
        _ => {}
    }
}

/// Reads `M` from its protobuf JSON form (an `@type` key at the top is allowed).
pub(crate) fn from_json<M: Message + Default + prost::Name>(value: &Value) -> Result<M, String> {
    let desc = pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| format!("{} is not in the descriptor set", M::full_name()))?;
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("@type");
    }
    mask_unknown_any(&mut value);
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic = DynamicMessage::deserialize_with_options(desc, value, &options).map_err(|e| e.to_string())?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| e.to_string())
}

/// Checks that every field set in `msg` is `used` or harmlessly `ignored` (counted); any other
/// set field rejects the resource, naming `path.field`.
pub(crate) fn check<M: Message + prost::Name>(cx: &mut Cx<'_>, path: &str, msg: &M, used: &[&str], ignored: &[&str]) -> Tr<()> {
    let Some(desc) = pool().get_message_by_name(&M::full_name()) else { return Ok(()) };
    let Ok(dynamic) = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) else { return Ok(()) };
    for (field, _) in dynamic.fields() {
        let name = field.name();
        if used.contains(&name) {
            continue;
        }
        if ignored.contains(&name) {
            cx.ignore(&format!("{}.{name}", M::NAME));
            continue;
        }
        let at = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
        return Err(cx.reject(at, format!("{}.{name} is not supported by oxidecar", M::NAME)));
    }
    Ok(())
}
