//! `/config_dump?format=envoy`: the Envoy admin ConfigDump `istioctl proxy-config` reads. With
//! xDS it shows the Envoy resources as last accepted (version, time, refused listeners in
//! `error_state`); with a static file, the model rendered as the Envoy resources that would
//! configure the same behaviour. Private keys are always `[redacted]`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxidecar_xds::envoy::render::{self, DumpView, ResourceMeta};
use oxidecar_xds::envoy::Kind;

use super::AdminState;

pub fn render(s: &AdminState) -> serde_json::Value {
    let view = match &s.xds_held {
        Some(held) => held.lock().map(|v| v.clone()).unwrap_or_default(),
        None => static_view(s),
    };
    render::config_dump(&view)
}

/// The static config as if a control plane had sent it, at the config's version.
fn static_view(s: &AdminState) -> DumpView {
    let snapshot = s.shared.tables.load().snapshot.clone();
    let mut resources = render::resources_from_snapshot(&snapshot);
    if let Some(id) = &snapshot.identity {
        // Certificates are public; the key is not read at all.
        let chain = std::fs::read(&id.cert_chain).unwrap_or_default();
        let roots = std::fs::read(&id.trust_bundle).unwrap_or_default();
        resources.secrets.insert("default".into(), Arc::new(render::certificate_secret(chain, render::REDACTED.as_bytes().to_vec())));
        resources.secrets.insert("ROOTCA".into(), Arc::new(render::root_secret(roots)));
    }
    let version = s.source.version.load(Ordering::SeqCst).to_string();
    let mut view = DumpView { node: Some(oxidecar_xds::ads::node_from_env(|k| std::env::var(k).ok(), std::env::vars())), ..Default::default() };
    for kind in Kind::ALL {
        for name in resources.names(kind) {
            view.meta.insert((kind, name), ResourceMeta { version: version.clone(), last_updated: None });
        }
    }
    view.resources = resources;
    view
}
