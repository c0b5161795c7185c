//! oxidecar's config plane: the typed mesh model every data-plane part reads, and the loaders that
//! produce it (today the static YAML file; the Istio xDS translator joins later).
#![forbid(unsafe_code)]

pub mod ads;
pub mod envoy;
pub mod model;
pub mod static_file;

pub use model::Snapshot;
pub use static_file::{LoadError, load_file, parse_str};
