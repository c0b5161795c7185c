//! The end-to-end harness: the real `oxidecar` binary against real servers on loopback.
//! Upstreams here are small real servers (HTTP/1.1 + h2c, TCP echo, a tonic gRPC service).

pub mod grpc;
pub mod harness;
pub mod upstream;

pub use harness::*;
