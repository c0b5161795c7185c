//! Renders the declarations as `docs/components.md`.

use std::fmt::Write;

use super::{Key, TypeInfo, Use};

/// The command that rewrites `docs/components.md` from the declarations.
pub const REGENERATE: &str = "OXIDECAR_BLESS=1 cargo test -p oxidecar-components --lib docs_components_md_is_current";

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn key_row(out: &mut String, k: &Key) {
    let default = if k.default.is_empty() { String::new() } else { format!("`{}`", k.default) };
    let effect = match k.usage {
        Use::Used => String::new(),
        Use::Accepted => " *No effect here.*".to_string(),
        Use::OnlyValue(v) => format!(" *Only `{v}` is accepted.*"),
    };
    let _ = writeln!(
        out,
        "| `{}` | {} | {} | {} | {}{} |",
        k.name,
        if k.required { "yes" } else { "" },
        cell(&default),
        cell(&k.kind.describe()),
        cell(k.description),
        effect
    );
}

/// The whole document, one section per type in the order given.
pub fn render_markdown(types: &[&TypeInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!-- Generated from components/src/catalog/*.rs; do not edit by hand.");
    let _ = writeln!(out, "     Regenerate: {REGENERATE} -->");
    out.push_str(
        "\n# Component types\n\n\
         Every type `--resources-path` accepts, with the metadata keys of its Dapr Component file. The\n\
         loader checks each file against this list before the backend starts: an unknown key, a missing\n\
         required key or a malformed value stops start-up with an error naming the key, the component and\n\
         the file. Keys Dapr defines that make no difference here are accepted so existing files work.\n\
         Defaults apply when a key is absent. Durations are written `500ms`, `10s`, `1m30s`, `2h` or as a\n\
         number of seconds.\n\n",
    );
    out.push_str("| type | cargo feature | capabilities |\n|---|---|---|\n");
    for t in types {
        let feature = if t.feature.is_empty() { "always".to_string() } else { format!("`{}`", t.feature) };
        let _ = writeln!(out, "| [`{0}`](#{1}) | {feature} | {2} |", t.type_name, t.type_name.replace('.', ""), caps(t));
    }
    for t in types {
        let _ = write!(out, "\n## {}\n\n{}\n\n", t.type_name, t.summary);
        if !t.feature.is_empty() {
            let _ = writeln!(out, "Built with the cargo feature `{}` (on in the `oxidecar` binary).\n", t.feature);
        }
        if !t.capabilities.is_empty() {
            let _ = writeln!(out, "Capabilities: {}.\n", caps(t));
        }
        if let Some(text) = t.free_form {
            let _ = writeln!(out, "{text}\n");
        }
        if t.all_keys().next().is_none() {
            if t.free_form.is_none() {
                out.push_str("No metadata keys.\n");
            }
            continue;
        }
        out.push_str("| key | required | default | value | meaning |\n|---|---|---|---|---|\n");
        for k in t.all_keys() {
            key_row(&mut out, k);
        }
    }
    out
}

fn caps(t: &TypeInfo) -> String {
    if t.capabilities.is_empty() {
        return String::new();
    }
    t.capabilities.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}
