//! The end-to-end harness: the real `oxidecar` binary against real servers on loopback.
//! Upstreams here are small real servers (HTTP/1.1 + h2c, TCP echo, a tonic gRPC service);
//! `pods` runs them in network namespaces behind captured sidecars.

pub mod grpc;
pub mod harness;
pub mod mtls;
pub mod otlp;
pub mod pods;
pub mod relay;
pub mod sdk;
pub mod sds;
pub mod upstream;
pub mod xds;

pub use harness::*;
