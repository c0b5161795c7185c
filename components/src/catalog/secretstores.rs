//! Secret store declarations.

use super::Kind::{Bool, Text};
use super::{Key, TypeInfo};

/// `secretstores.local.file`.
pub static LOCAL_FILE: TypeInfo = TypeInfo {
    type_name: "secretstores.local.file",
    feature: "",
    summary: "Secrets from a JSON file read at start-up; nested objects are flattened with `nestedSeparator`.",
    keys: &[&[
        Key::required("secretsFile", Text, "Path of the JSON file."),
        Key::optional("nestedSeparator", Text, ":", "Joins nested JSON keys into one secret name."),
        Key::optional("multiValued", Bool, "false", "`true`: each top-level key is one secret holding its nested keys."),
    ]],
    capabilities: &[],
    free_form: None,
};

/// `secretstores.local.env`.
pub static LOCAL_ENV: TypeInfo = TypeInfo {
    type_name: "secretstores.local.env",
    feature: "",
    summary: "The sidecar's environment variables as secrets.",
    keys: &[&[Key::optional("prefix", Text, "", "Only variables starting with this are visible, named without it.")]],
    capabilities: &[],
    free_form: None,
};

/// Secret store declarations.
pub const ALL: &[&TypeInfo] = &[&LOCAL_FILE, &LOCAL_ENV];
