//! The original destination of a captured connection (SO_ORIGINAL_DST for IPv4,
//! IP6T_SO_ORIGINAL_DST for IPv6), read where the connection is accepted.
//!
//! Pingora picks the option by the socket's family, which is wrong on a dual-stack listener
//! (`[::]:15001`): an IPv4 client arrives on an IPv6 socket with a v4-mapped address while its
//! conntrack entry is IPv4, so the IPv6 option fails. Here the option follows the peer's real
//! family, and the result is stored in the connection's socket digest, where the HTTP and TCP
//! paths read it, with v4-mapped addresses turned back into IPv4.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::sys::socket::{getsockopt, sockopt};
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;

/// `addr` with a v4-mapped IPv6 address turned back into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The original destination of the connection on `fd`, whose local address is `local`.
fn read(fd: RawFd, local: SocketAddr) -> Option<SocketAddr> {
    #[allow(unsafe_code)]
    // SAFETY: `fd` belongs to a stream the caller holds a reference to for this whole call, so it
    // stays open; the borrow does not outlive this function.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    if canonical(local).is_ipv4() {
        let sin = getsockopt(&fd, sockopt::OriginalDst).ok()?;
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
    } else {
        let sin6 = getsockopt(&fd, sockopt::Ip6tOriginalDst).ok()?;
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id)))
    }
}

/// Records the accepted connection's original destination in its socket digest (before anything
/// asks Pingora for it). A connection that was not redirected reports its own local address.
pub fn record(stream: &Stream) {
    let Some(digest) = stream.get_socket_digest() else { return };
    let Some(l4) = stream.as_any().downcast_ref::<L4Stream>() else { return };
    let Some(local) = digest.local_addr().and_then(|a| a.as_inet()).copied() else { return };
    let original = read(l4.as_raw_fd(), local).map(|a| PingoraAddr::Inet(canonical(a)));
    // Already set means someone read it first; theirs stands.
    let _ = digest.original_dst.set(original);
}

/// The original destination [`record`] stored for `stream`, to carry over to a stream that wraps it.
pub fn recorded(stream: &Stream) -> Option<PingoraAddr> {
    stream.get_socket_digest()?.original_dst.get().cloned().flatten()
}

/// Gives a wrapping stream (e.g. terminated TLS, whose digest is new) the original destination
/// recorded for the stream it wraps, so passthrough still knows where the connection was going.
pub fn restore(stream: &L4Stream, original: Option<PingoraAddr>) {
    if let Some(digest) = stream.get_socket_digest() {
        let _ = digest.original_dst.set(original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:8080".parse().expect("addr");
        assert_eq!(canonical(mapped), "10.1.2.3:8080".parse::<SocketAddr>().expect("addr"));
        let v6: SocketAddr = "[fd00::1]:8080".parse().expect("addr");
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn an_unredirected_connection_reports_its_own_destination_in_both_families() {
        // Without NAT, conntrack's original destination is the address the client dialled.
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(bind) else { continue };
            let addr = listener.local_addr().expect("addr");
            let _client = std::net::TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            // Conntrack may be off in this namespace (no NAT table loaded): then there is no answer.
            if let Some(original) = read(server.as_raw_fd(), server.local_addr().expect("local")) {
                assert_eq!(original, addr, "{bind}");
            }
        }
    }
}
