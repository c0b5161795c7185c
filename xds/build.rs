//! Finds the protobuf descriptor set that `envoy-types` ships (`src/generated/types.bin`) and
//! copies it into OUT_DIR, so config dumps in protobuf JSON can be read by reflection.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = find_by_metadata().or_else(find_in_registry).expect(
        "cannot find envoy-types' src/generated/types.bin (looked with `cargo metadata` and in $CARGO_HOME/registry/src)",
    );
    std::fs::copy(&source, out.join("envoy_types.bin")).expect("copy envoy-types descriptor set");
}

fn descriptor_in(crate_dir: &Path) -> Option<PathBuf> {
    let p = crate_dir.join("src/generated/types.bin");
    p.is_file().then_some(p)
}

/// Asks cargo where the envoy-types package it resolved lives (works for registry, vendored and git sources).
fn find_by_metadata() -> Option<PathBuf> {
    let cargo = std::env::var("CARGO").ok()?;
    let manifest = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--manifest-path"])
        .arg(Path::new(&manifest).join("Cargo.toml"))
        .output()
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    meta["packages"].as_array()?.iter().find(|p| p["name"] == "envoy-types").and_then(|p| {
        let manifest_path = PathBuf::from(p["manifest_path"].as_str()?);
        descriptor_in(manifest_path.parent()?)
    })
}

fn find_in_registry() -> Option<PathBuf> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok()?;
    let src = home.join("registry/src");
    for index in std::fs::read_dir(src).ok()?.flatten() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(index.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("envoy-types-0.7")))
            .collect();
        dirs.sort();
        if let Some(found) = dirs.iter().rev().find_map(|d| descriptor_in(d)) {
            return Some(found);
        }
    }
    None
}
