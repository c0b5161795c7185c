use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::*;
use crate::registry::{Component, Registry};

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `docs/components.md` is exactly what the declarations render; `OXIDECAR_BLESS=1` rewrites it.
#[test]
fn docs_components_md_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/components.md");
    let rendered = render_markdown(&all());
    if std::env::var_os("OXIDECAR_BLESS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/components.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/components.md differs from the component declarations in components/src/catalog/; regenerate it with:\n  {}",
        render::REGENERATE
    );
}

#[test]
fn declarations_are_unique_and_well_formed() {
    let mut types = BTreeSet::new();
    for t in all() {
        assert!(types.insert(t.type_name), "{} declared twice", t.type_name);
        let mut keys = BTreeSet::new();
        for k in t.all_keys() {
            assert!(keys.insert(k.name), "{}: key {} declared twice", t.type_name, k.name);
            assert!(!k.required || k.default.is_empty(), "{}: required key {} has a default", t.type_name, k.name);
            if !k.default.is_empty() {
                assert_eq!(k.kind.check(k.default), Ok(()), "{}: default of {}", t.type_name, k.name);
            }
        }
    }
}

/// Every type the registry builds is declared, and every declared type of a built feature is registered.
#[test]
fn registry_and_declarations_agree() {
    let registry = Registry::builtin();
    for name in registry.known_types() {
        assert!(find(name).is_some(), "{name} is registered but not declared in components/src/catalog/");
    }
    for t in all().into_iter().filter(|t| is_built(t)) {
        assert!(registry.get(t.type_name).is_some(), "{} is declared and built but not registered", t.type_name);
    }
}

/// What GetMetadata reports (the store's own `features()`) is what the docs list.
#[tokio::test]
async fn state_capabilities_match_the_stores() {
    let registry = Registry::builtin();
    for t in all().into_iter().filter(|t| t.type_name.starts_with("state.") && is_built(t)) {
        let mut sample = BTreeMap::new();
        for k in t.all_keys().filter(|k| k.required) {
            let v = match k.name {
                "redisHost" => "127.0.0.1:6379",
                "connectionString" => "host=127.0.0.1 user=postgres dbname=test",
                other => panic!("{}: no sample value for required key {other}", t.type_name),
            };
            sample.insert(k.name.to_string(), v.to_string());
        }
        let ctor = registry.get(t.type_name).expect("registered");
        let Ok(Component::State(store)) = ctor(crate::metadata::Metadata::new(sample)) else {
            panic!("{} builds from its required keys", t.type_name)
        };
        let reported: Vec<&str> = store.features().iter().map(|f| f.as_str()).collect();
        assert_eq!(reported, t.capabilities, "{}", t.type_name);
    }
}

#[test]
fn validation_names_the_key() {
    let t = &state::REDIS;
    assert_eq!(t.validate(&values(&[("redisHost", "h:1"), ("poolSize", "20"), ("actorStateStore", "true")])), Ok(()));
    let e = t.validate(&values(&[("redisHost", "h:1"), ("redisHots", "x")])).expect_err("invalid").to_string();
    assert!(e.contains("\"redisHots\"") && e.contains("redisHost"), "{e}");
    let e = t.validate(&values(&[])).expect_err("invalid").to_string();
    assert!(e.contains("\"redisHost\"") && e.contains("required"), "{e}");
    let e = t.validate(&values(&[("redisHost", "h:1"), ("redisDB", "one")])).expect_err("invalid").to_string();
    assert!(e.contains("\"redisDB\"") && e.contains("integer"), "{e}");
    let e = t.validate(&values(&[("redisHost", "h:1"), ("dialTimeout", "soon")])).expect_err("invalid").to_string();
    assert!(e.contains("\"dialTimeout\"") && e.contains("duration"), "{e}");
    assert_eq!(t.validate(&values(&[("redisHost", "h:1"), ("enableTLS", "False")])), Ok(()));
    let e = t.validate(&values(&[("redisHost", "h:1"), ("enableTLS", "true")])).expect_err("invalid").to_string();
    assert!(e.contains("\"enableTLS\"") && e.contains("not supported"), "{e}");
    let e = t.validate(&values(&[("redisHost", "h:1"), ("redisType", "cluster")])).expect_err("invalid").to_string();
    assert!(e.contains("\"redisType\""), "{e}");
    let e = t.validate(&values(&[("redisHost", "h:1"), ("redisType", "ring")])).expect_err("invalid").to_string();
    assert!(e.contains("\"redisType\"") && e.contains("`node`"), "{e}");
    // Free-form types take any key as data.
    assert_eq!(configuration::IN_MEMORY.validate(&values(&[("greeting", "hi")])), Ok(()));
}

#[test]
fn declared_defaults_fill_absent_keys() {
    let mut m = crate::metadata::Metadata::new(values(&[("redisHost", "h:1")])).with_defaults(&state::REDIS);
    assert_eq!(m.take("dialTimeout").as_deref(), Some("5s"));
    assert_eq!(m.take("redisHost").as_deref(), Some("h:1"));
    assert_eq!(m.take("redisPassword"), None);
}
