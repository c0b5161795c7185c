//! The connection circuit breakers of one cluster (Envoy's `max_connections` and
//! `max_pending_requests`) as an admission gate.
//!
//! The gate counts *connection units*: one upstream connection is [`STREAMS_PER_CONNECTION`] units.
//! An HTTP/1 request or a proxied TCP connection occupies a whole connection for as long as it
//! runs, so it takes all of a connection's units; an HTTP/2 stream shares its connection with
//! others and takes one unit. The capacity is `max_connections` connections' worth of units. A
//! request that does not fit waits as *pending*; when `max_pending_requests` are already waiting it
//! is refused at once (the caller answers 503 `UO`). Limits are passed on each call, so a config
//! reload takes effect without losing the counts of requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Concurrent HTTP/2 streams per upstream connection, and so the units one connection is worth.
pub const STREAMS_PER_CONNECTION: u64 = 100;

/// How much of a connection an admitted unit of work holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// An HTTP/1 request or a TCP connection: one whole connection.
    Connection,
    /// An HTTP/2 stream: one of a connection's streams.
    Stream,
}

impl Occupancy {
    fn units(self) -> u64 {
        match self {
            Occupancy::Connection => STREAMS_PER_CONNECTION,
            Occupancy::Stream => 1,
        }
    }
}

/// The two thresholds the gate enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
}

impl Limits {
    fn capacity(self) -> u64 {
        u64::from(self.max_connections) * STREAMS_PER_CONNECTION
    }
}

/// Refused: `max_connections` are in use and `max_pending_requests` are already waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOverflow;

/// Per-cluster gate state; survives config reloads (the proxy keeps it with the cluster's stats).
#[derive(Debug, Default)]
pub struct ConnectionGate {
    in_use: AtomicU64,
    pending: AtomicU64,
    /// Times work found every connection taken (Envoy's `upstream_cx_overflow`).
    cx_overflow: AtomicU64,
    /// Times work was refused because the pending queue was full (`upstream_rq_pending_overflow`).
    pending_overflow: AtomicU64,
    /// Times work had to wait (`upstream_rq_pending_total`).
    pending_total: AtomicU64,
    released: Notify,
}

/// Held while admitted work runs; gives its units back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<ConnectionGate>,
    units: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.in_use.fetch_sub(self.units, Ordering::AcqRel);
        // Wake every waiter: a released stream may not fit a waiting HTTP/1 request, and the
        // queue is bounded by `max_pending_requests`, so waking them all stays cheap.
        self.gate.released.notify_waiters();
    }
}

/// Counts a waiter in `pending` until it is admitted or gives up (its future is dropped).
struct Waiting<'a>(&'a ConnectionGate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A snapshot of the gate's counters, for `/stats` and `/clusters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateStats {
    /// Connections' worth of units in use, rounded up.
    pub connections_in_use: u64,
    pub pending_active: u64,
    pub pending_total: u64,
    pub cx_overflow: u64,
    pub pending_overflow: u64,
}

impl ConnectionGate {
    fn try_take(&self, units: u64, capacity: u64) -> bool {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used + units <= capacity).then_some(used + units))
            .is_ok()
    }

    /// Admits work of `occupancy` now when a connection (or stream) is free; else waits as
    /// pending until one is, or refuses at once when the pending queue is full. Dropping the
    /// returned future while it waits leaves the queue.
    pub async fn acquire(self: &Arc<Self>, occupancy: Occupancy, limits: Limits) -> Result<Permit, PendingOverflow> {
        let units = occupancy.units();
        let capacity = limits.capacity();
        let permit = || Permit { gate: self.clone(), units };
        if self.try_take(units, capacity) {
            return Ok(permit());
        }
        self.cx_overflow.fetch_add(1, Ordering::Relaxed);
        let waiting_before = self.pending.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(self);
        if waiting_before >= u64::from(limits.max_pending_requests) {
            self.pending_overflow.fetch_add(1, Ordering::Relaxed);
            return Err(PendingOverflow);
        }
        self.pending_total.fetch_add(1, Ordering::Relaxed);
        loop {
            // Register for the wake-up before checking, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_take(units, capacity) {
                return Ok(permit());
            }
            released.await;
        }
    }

    /// Admits without waiting, or says no; does not count as pending (for callers that cannot wait).
    pub fn try_acquire(self: &Arc<Self>, occupancy: Occupancy, limits: Limits) -> Option<Permit> {
        let units = occupancy.units();
        self.try_take(units, limits.capacity()).then(|| Permit { gate: self.clone(), units })
    }

    pub fn stats(&self) -> GateStats {
        GateStats {
            connections_in_use: self.in_use.load(Ordering::Relaxed).div_ceil(STREAMS_PER_CONNECTION),
            pending_active: self.pending.load(Ordering::Relaxed),
            pending_total: self.pending_total.load(Ordering::Relaxed),
            cx_overflow: self.cx_overflow.load(Ordering::Relaxed),
            pending_overflow: self.pending_overflow.load(Ordering::Relaxed),
        }
    }

    /// Whether `max_connections` is reached (Envoy's `circuit_breakers.default.cx_open` gauge).
    pub fn connections_full(&self, limits: Limits) -> bool {
        self.in_use.load(Ordering::Relaxed) + STREAMS_PER_CONNECTION > limits.capacity()
    }

    /// Whether the pending queue is full (`circuit_breakers.default.rq_pending_open`).
    pub fn pending_full(&self, limits: Limits) -> bool {
        self.pending.load(Ordering::Relaxed) >= u64::from(limits.max_pending_requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ONE_AND_ONE: Limits = Limits { max_connections: 1, max_pending_requests: 1 };

    #[tokio::test]
    async fn one_in_flight_one_pending_the_rest_refused() {
        let gate = Arc::new(ConnectionGate::default());
        let first = gate.acquire(Occupancy::Connection, ONE_AND_ONE).await.expect("free connection");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Occupancy::Connection, ONE_AND_ONE).await.map(|_p| ()) }
        });
        while gate.stats().pending_active == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..3 {
            assert_eq!(gate.acquire(Occupancy::Connection, ONE_AND_ONE).await.map(|_| ()), Err(PendingOverflow));
        }
        assert!(!waiter.is_finished(), "the pending request waits for the connection");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("admitted after release").expect("join").expect("permit");
        let s = gate.stats();
        assert_eq!((s.pending_active, s.pending_total, s.pending_overflow, s.cx_overflow, s.connections_in_use), (0, 1, 3, 4, 0));
    }

    #[tokio::test]
    async fn streams_share_a_connection_but_a_whole_connection_does_not_fit_beside_them() {
        let gate = Arc::new(ConnectionGate::default());
        let limits = Limits { max_connections: 1, max_pending_requests: 0 };
        let streams: Vec<_> = (0..STREAMS_PER_CONNECTION).map(|_| gate.try_acquire(Occupancy::Stream, limits).expect("stream")).collect();
        assert_eq!(gate.stats().connections_in_use, 1);
        assert!(gate.try_acquire(Occupancy::Stream, limits).is_none(), "stream 101 needs a second connection");
        assert!(gate.connections_full(limits));
        drop(streams);
        let whole = gate.try_acquire(Occupancy::Connection, limits).expect("whole connection once the streams are done");
        assert!(gate.try_acquire(Occupancy::Stream, limits).is_none());
        assert_eq!(gate.acquire(Occupancy::Stream, limits).await.map(|_| ()), Err(PendingOverflow), "no pending allowed");
        drop(whole);
        assert_eq!(gate.stats().connections_in_use, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_queue() {
        let gate = Arc::new(ConnectionGate::default());
        let _held = gate.try_acquire(Occupancy::Connection, ONE_AND_ONE).expect("free");
        let gave_up = tokio::time::timeout(Duration::from_millis(20), gate.acquire(Occupancy::Connection, ONE_AND_ONE)).await;
        assert!(gave_up.is_err());
        assert_eq!(gate.stats().pending_active, 0);
        assert!(!gate.pending_full(ONE_AND_ONE), "the queue has room again");
    }

    #[tokio::test]
    async fn a_raised_limit_admits_at_once() {
        let gate = Arc::new(ConnectionGate::default());
        let _a = gate.try_acquire(Occupancy::Connection, ONE_AND_ONE).expect("free");
        let raised = Limits { max_connections: 2, max_pending_requests: 1 };
        assert!(gate.try_acquire(Occupancy::Connection, ONE_AND_ONE).is_none());
        assert!(gate.try_acquire(Occupancy::Connection, raised).is_some(), "a reload's new limit applies to new work");
    }
}
