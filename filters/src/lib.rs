//! Request policy as pure logic, without sockets: route matching, weighted cluster picks, load
//! balancing, retries, outlier detection and the connection circuit breakers.
//! Built once per config snapshot; shared by transparent traffic and service invocation.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod hash;
pub mod lane;
pub mod lb;
pub mod outlier;
pub mod redirect;
pub mod retry;
pub mod route;
pub mod weighted;

/// Index of a cluster in the proxy's per-snapshot cluster table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterId(pub usize);
