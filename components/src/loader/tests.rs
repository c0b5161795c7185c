use std::path::PathBuf;

use super::*;

fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxidecar-loader-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

const SECRETS: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: localsecretstore
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - name: secretsFile
    value: SECRETS_FILE
"#;

#[tokio::test]
async fn multi_document_scopes_secrets_and_subscriptions() {
    let d = dir("ok", &[]);
    std::fs::write(d.join("secrets.json"), r#"{"cfg":{"initial":"from-secret"}}"#).unwrap();
    let secrets = SECRETS.replace("SECRETS_FILE", &d.join("secrets.json").display().to_string());
    let main = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
  metadata:
  - name: actorStateStore
    value: true
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: other-app-store
spec:
  type: state.in-memory
scopes: [someone-else]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: config
spec:
  type: configuration.in-memory
  metadata:
  - name: greeting
    secretKeyRef: {name: "cfg:initial", key: "cfg:initial"}
auth:
  secretStore: localsecretstore
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    rules:
    - match: event.type == "widget"
      path: /widgets
    default: /orders
  deadLetterTopic: poison
scopes: [myapp]
"#;
    std::fs::write(d.join("secrets.yaml"), secrets).unwrap();
    std::fs::write(d.join("main.yaml"), main).unwrap();
    let res = load_resources(&[d.clone()], "myapp", &Registry::builtin()).await.unwrap();
    let names: Vec<_> = res.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["localsecretstore", "statestore", "config"]);
    let Component::Configuration(cfg) = &res.components[2].component else { panic!("not a config store") };
    assert_eq!(cfg.get(&[]).await.unwrap()["greeting"].value, "from-secret");
    assert_eq!(res.subscriptions.len(), 1);
    assert_eq!(res.subscriptions[0].dead_letter_topic.as_deref(), Some("poison"));
    let other = load_resources(&[d], "other", &Registry::builtin()).await.unwrap();
    assert!(other.subscriptions.is_empty());
}

async fn load_err(name: &str, text: &str) -> String {
    let d = dir(name, &[("c.yaml", text)]);
    load_resources(&[d], "app", &Registry::builtin()).await.unwrap_err().to_string()
}

#[tokio::test]
async fn errors_name_file_component_and_key() {
    let unknown_type = "kind: Component\nmetadata: {name: s}\nspec: {type: state.nope}\n";
    let e = load_err("type", unknown_type).await;
    assert!(e.contains("c.yaml") && e.contains("\"s\"") && e.contains("state.nope"), "{e}");

    let unknown_key = "kind: Component\nmetadata: {name: s}\nspec:\n  type: state.in-memory\n  metadata:\n  - {name: redisHost, value: x}\n";
    let e = load_err("key", unknown_key).await;
    assert!(e.contains("c.yaml") && e.contains("\"s\"") && e.contains("redisHost"), "{e}");

    let missing_store = "kind: Component\nmetadata: {name: s}\nspec:\n  type: lock.in-memory\n  metadata:\n  - {name: k, secretKeyRef: {name: a}}\nauth: {secretStore: vault}\n";
    let e = load_err("ref", missing_store).await;
    assert!(e.contains("vault") && e.contains("spec.metadata[0]"), "{e}");

    let dup = "kind: Component\nmetadata: {name: s}\nspec: {type: lock.in-memory}\n---\nkind: Component\nmetadata: {name: s}\nspec: {type: lock.in-memory}\n";
    assert!(load_err("dup", dup).await.contains("already used"));

    let bad_match = "kind: Subscription\nmetadata: {name: x}\nspec: {pubsubname: p, topic: t, routes: {rules: [{match: 'size(event) > 1', path: /a}]}}\n";
    let e = load_err("match", bad_match).await;
    assert!(e.contains("rules[0].match"), "{e}");
}

/// A component file as Dapr's docs and quickstarts write it loads unchanged: Dapr's keys that make
/// no difference here are accepted, declared defaults fill the rest.
#[cfg(feature = "redis")]
#[tokio::test]
async fn dapr_component_files_load_unchanged() {
    let quickstart = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    value: ""
  - name: actorStateStore
    value: "true"
  - name: enableTLS
    value: false
  - name: dialTimeout
    value: 1m30s
  - name: poolSize
    value: 20
  - name: keyPrefix
    value: name
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: lockstore
spec:
  type: lock.in-memory
  metadata:
  - name: keyPrefix
    value: none
"#;
    let d = dir("dapr-files", &[("c.yaml", quickstart)]);
    let res = load_resources(&[d], "app", &Registry::builtin()).await.expect("loads");
    assert_eq!(res.components.len(), 2);
    let Component::Lock(lock) = &res.components[1].component else { panic!("not a lock store") };
    assert!(lock.try_lock("r", "me", std::time::Duration::from_secs(5)).await.expect("in-memory lock"));
    let e = lock.try_lock("a||b", "me", std::time::Duration::from_secs(5)).await.expect_err("|| refused").to_string();
    assert!(e.contains("||"), "{e}");

    let bad_value = "kind: Component\nmetadata: {name: s}\nspec:\n  type: state.redis\n  metadata:\n  - {name: redisHost, value: 'h:1'}\n  - {name: dialTimeout, value: soon}\n";
    let e = load_err("bad-duration", bad_value).await;
    assert!(e.contains("c.yaml") && e.contains("\"s\"") && e.contains("dialTimeout") && e.contains("duration"), "{e}");
    let missing = "kind: Component\nmetadata: {name: s}\nspec:\n  type: state.redis\n  metadata:\n  - {name: redisPassword, value: x}\n";
    let e = load_err("missing", missing).await;
    assert!(e.contains("\"redisHost\" is required") && e.contains("\"s\""), "{e}");
}
