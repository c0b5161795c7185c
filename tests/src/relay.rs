//! A TCP relay from a port in the test range (20000–32000) to a shared server, that a test cuts
//! and restores to simulate an outage without touching the server. Self-contained (tokio and
//! tokio-util only), so the components' and runtime APIs' tests include this file by path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn start_port() -> u16 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    20_000 + ((seed ^ std::process::id().wrapping_mul(7919)) % 12_000) as u16
}

/// A listener on a free loopback port in 20000–32000 (the test range, away from ephemeral ports).
pub async fn listen_in_range() -> TcpListener {
    let start = start_port();
    for i in 0..12_000u16 {
        let port = 20_000 + (start - 20_000 + i) % 12_000;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
            return l;
        }
    }
    panic!("no free port in 20000-32000");
}

/// A free port in the test range (bound and released).
pub fn free_port() -> u16 {
    let start = start_port();
    (0..12_000u16)
        .map(|i| 20_000 + (start - 20_000 + i) % 12_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("no free port in 20000-32000")
}

const UP: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

/// A TCP relay from a test-range port to a target server.
pub struct Relay {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    generation: Arc<Mutex<CancellationToken>>,
    held: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
    stop: CancellationToken,
}

impl Relay {
    /// Starts relaying to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = listen_in_range().await;
        let addr = listener.local_addr().expect("addr");
        let relay = Self {
            addr,
            mode: Arc::new(AtomicU8::new(UP)),
            generation: Arc::new(Mutex::new(CancellationToken::new())),
            held: Arc::new(Mutex::new(Vec::new())),
            stop: CancellationToken::new(),
        };
        let (mode, generation, held, stop, target) =
            (relay.mode.clone(), relay.generation.clone(), relay.held.clone(), relay.stop.clone(), target.to_string());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                match mode.load(Ordering::SeqCst) {
                    CUT => drop(client),
                    BLACKHOLE => {
                        // Accepted but never answered: callers must give up on their own deadline.
                        if let Ok(server) = TcpStream::connect(&target).await {
                            held.lock().expect("held").push((client, server));
                        }
                    }
                    _ => {
                        let token = generation.lock().expect("generation").clone();
                        let (mode, held, target) = (mode.clone(), held.clone(), target.clone());
                        tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(&target).await else { return };
                            let mut client = client;
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = token.cancelled() => {
                                    if mode.load(Ordering::SeqCst) == BLACKHOLE {
                                        held.lock().expect("held").push((client, server));
                                    }
                                }
                            }
                        });
                    }
                }
            }
        });
        relay
    }

    /// `127.0.0.1:port` of the relay.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn new_generation(&self) {
        let mut g = self.generation.lock().expect("generation");
        g.cancel();
        *g = CancellationToken::new();
    }

    /// The server "goes down": open connections are closed and new ones are refused.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        self.new_generation();
        self.held.lock().expect("held").clear();
    }

    /// The network stalls: connections stay open but nothing gets through.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
        self.new_generation();
    }

    /// The server "comes back"; stalled connections are closed so clients reconnect.
    pub fn restore(&self) {
        self.mode.store(UP, Ordering::SeqCst);
        self.held.lock().expect("held").clear();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        self.generation.lock().map(|g| g.cancel()).ok();
    }
}

