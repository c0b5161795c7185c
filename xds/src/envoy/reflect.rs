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
    for number in set_field_numbers(&msg.encode_to_vec()) {
        // Numbers the descriptor set does not know are not Envoy fields; prost drops them anyway.
        let Some(field) = desc.get_field(number) else { continue };
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

/// The numbers of the fields present in an encoded message, ascending, read off the wire format
/// without decoding the values (a translated message is checked at every level, so decoding
/// whole subtrees each time would cost depth × size).
fn set_field_numbers(mut bytes: &[u8]) -> Vec<u32> {
    use prost::encoding::{DecodeContext, decode_key, skip_field};
    let mut numbers = Vec::new();
    while !bytes.is_empty() {
        let Ok((number, wire_type)) = decode_key(&mut bytes) else { break };
        if skip_field(wire_type, number, &mut bytes, DecodeContext::default()).is_err() {
            break;
        }
        numbers.push(number);
    }
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::google::protobuf::Duration;
    use prost::Message;

    use super::set_field_numbers;

    #[test]
    fn set_fields_are_read_off_the_wire_in_number_order() {
        // name = 1, connect_timeout = 4, per_connection_buffer_limit_bytes = 5, lb_policy = 6.
        let c = Cluster {
            lb_policy: 1,
            name: "x".into(),
            connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
            per_connection_buffer_limit_bytes: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 0 }),
            ..Default::default()
        };
        assert_eq!(set_field_numbers(&c.encode_to_vec()), vec![1, 4, 5, 6]);
        assert_eq!(set_field_numbers(&Cluster::default().encode_to_vec()), Vec::<u32>::new());
        // Truncated input: what could be read, and no panic.
        let bytes = c.encode_to_vec();
        assert_eq!(set_field_numbers(&bytes[..3]), vec![1]);
    }
}
