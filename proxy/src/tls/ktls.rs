//! Kernel TLS offload: after a handshake the record layer can move into the kernel (the `tls`
//! upper-layer protocol), so sendfile and splice work and no user-space copy encrypts. This module
//! detects whether the kernel offers it and turns rustls' extracted traffic secrets into the
//! kernel's crypto-info structures. Without kTLS the record layer stays in rustls (user space).

use nix::sys::socket::sockopt::TlsCryptoInfo;
use rustls::ConnectionTrafficSecrets;

/// Whether kernel TLS can be used, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Available,
    Unavailable(String),
}

impl Support {
    /// The kernel offers kTLS when the `tls` module is loaded (it then lists `tls` among the
    /// available upper-layer protocols).
    pub fn detect() -> Self {
        match std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp") {
            Ok(ulps) if ulps.split_whitespace().any(|u| u == "tls") => Support::Available,
            Ok(ulps) => Support::Unavailable(format!("the kernel offers no `tls` upper-layer protocol (available: {:?})", ulps.trim())),
            Err(e) => Support::Unavailable(format!("cannot read /proc/sys/net/ipv4/tcp_available_ulp: {e}")),
        }
    }

    pub fn available(&self) -> bool {
        *self == Support::Available
    }
}

/// TLS 1.2 and 1.3 record versions as the kernel spells them.
#[cfg_attr(not(test), allow(dead_code))]
const TLS_1_2_VERSION: u16 = 0x0303;
#[cfg_attr(not(test), allow(dead_code))]
const TLS_1_3_VERSION: u16 = 0x0304;

/// The kernel's crypto info for one direction: cipher, key, salt/IV and the record sequence
/// number the kernel continues from. Only AES-GCM and ChaCha20-Poly1305 are offloaded.
#[cfg_attr(not(test), allow(dead_code))]
pub fn crypto_info(tls13: bool, seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<TlsCryptoInfo, String> {
    let version = if tls13 { TLS_1_3_VERSION } else { TLS_1_2_VERSION };
    let rec_seq = seq.to_be_bytes();
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, .. } if key.as_ref().len() != 16 => Err("AES-128-GCM key is not 16 bytes".into()),
        ConnectionTrafficSecrets::Aes256Gcm { key, .. } if key.as_ref().len() != 32 => Err("AES-256-GCM key is not 32 bytes".into()),
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            // The 12-byte nonce is a 4-byte salt followed by an 8-byte explicit part.
            let (salt, explicit) = iv.as_ref().split_at(4);
            let mut info: nix::libc::tls12_crypto_info_aes_gcm_128 = zeroed_aes128();
            info.info.version = version;
            info.info.cipher_type = nix::libc::TLS_CIPHER_AES_GCM_128;
            info.key.copy_from_slice(key.as_ref());
            info.salt.copy_from_slice(salt);
            info.iv.copy_from_slice(explicit);
            info.rec_seq = rec_seq;
            Ok(TlsCryptoInfo::Aes128Gcm(info))
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            let (salt, explicit) = iv.as_ref().split_at(4);
            let mut info: nix::libc::tls12_crypto_info_aes_gcm_256 = zeroed_aes256();
            info.info.version = version;
            info.info.cipher_type = nix::libc::TLS_CIPHER_AES_GCM_256;
            info.key.copy_from_slice(key.as_ref());
            info.salt.copy_from_slice(salt);
            info.iv.copy_from_slice(explicit);
            info.rec_seq = rec_seq;
            Ok(TlsCryptoInfo::Aes256Gcm(info))
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            let mut info: nix::libc::tls12_crypto_info_chacha20_poly1305 = zeroed_chacha();
            info.info.version = version;
            info.info.cipher_type = nix::libc::TLS_CIPHER_CHACHA20_POLY1305;
            info.key.copy_from_slice(key.as_ref());
            info.iv.copy_from_slice(iv.as_ref());
            info.rec_seq = rec_seq;
            Ok(TlsCryptoInfo::Chacha20Poly1305(info))
        }
        _ => Err("the kernel cannot offload this cipher suite".into()),
    }
}

#[cfg_attr(not(test), allow(dead_code))]
fn zeroed_aes128() -> nix::libc::tls12_crypto_info_aes_gcm_128 {
    nix::libc::tls12_crypto_info_aes_gcm_128 {
        info: nix::libc::tls_crypto_info { version: 0, cipher_type: 0 },
        iv: [0; nix::libc::TLS_CIPHER_AES_GCM_128_IV_SIZE],
        key: [0; nix::libc::TLS_CIPHER_AES_GCM_128_KEY_SIZE],
        salt: [0; nix::libc::TLS_CIPHER_AES_GCM_128_SALT_SIZE],
        rec_seq: [0; nix::libc::TLS_CIPHER_AES_GCM_128_REC_SEQ_SIZE],
    }
}
#[cfg_attr(not(test), allow(dead_code))]
fn zeroed_aes256() -> nix::libc::tls12_crypto_info_aes_gcm_256 {
    nix::libc::tls12_crypto_info_aes_gcm_256 {
        info: nix::libc::tls_crypto_info { version: 0, cipher_type: 0 },
        iv: [0; nix::libc::TLS_CIPHER_AES_GCM_256_IV_SIZE],
        key: [0; nix::libc::TLS_CIPHER_AES_GCM_256_KEY_SIZE],
        salt: [0; nix::libc::TLS_CIPHER_AES_GCM_256_SALT_SIZE],
        rec_seq: [0; nix::libc::TLS_CIPHER_AES_GCM_256_REC_SEQ_SIZE],
    }
}
#[cfg_attr(not(test), allow(dead_code))]
fn zeroed_chacha() -> nix::libc::tls12_crypto_info_chacha20_poly1305 {
    nix::libc::tls12_crypto_info_chacha20_poly1305 {
        info: nix::libc::tls_crypto_info { version: 0, cipher_type: 0 },
        iv: [0; nix::libc::TLS_CIPHER_CHACHA20_POLY1305_IV_SIZE],
        key: [0; nix::libc::TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE],
        salt: [0; nix::libc::TLS_CIPHER_CHACHA20_POLY1305_SALT_SIZE],
        rec_seq: [0; nix::libc::TLS_CIPHER_CHACHA20_POLY1305_REC_SEQ_SIZE],
    }
}

/// Moves an established connection's record layer into the kernel: `TCP_ULP=tls`, then the
/// transmit and receive keys. Called only when [`Support::detect`] said the kernel can.
#[allow(dead_code)]
pub fn offload(fd: &impl std::os::fd::AsFd, tls13: bool, tx: (u64, &ConnectionTrafficSecrets), rx: (u64, &ConnectionTrafficSecrets)) -> Result<(), String> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(fd, sockopt::TcpUlp::default(), b"tls").map_err(|e| format!("TCP_ULP tls: {e}"))?;
    setsockopt(fd, sockopt::TcpTlsTx, &crypto_info(tls13, tx.0, tx.1)?).map_err(|e| format!("TLS_TX: {e}"))?;
    setsockopt(fd, sockopt::TcpTlsRx, &crypto_info(tls13, rx.0, rx.1)?).map_err(|e| format!("TLS_RX: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real in-memory TLS 1.3 handshake with AES-128-GCM; returns both sides' extracted secrets.
    fn handshake(suite: rustls::SupportedCipherSuite) -> (rustls::ExtractedSecrets, rustls::ExtractedSecrets) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params").self_signed(&key).expect("cert");
        let provider = Arc::new(rustls::crypto::CryptoProvider { cipher_suites: vec![suite], ..rustls::crypto::aws_lc_rs::default_provider() });
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("der");
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .expect("server config");
        server.enable_secret_extraction = true;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
        let mut s = rustls::ServerConnection::new(Arc::new(server)).expect("server");
        // Shuttle records until neither side has anything to say (tickets included).
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).expect("client write");
            s.read_tls(&mut buf.as_slice()).expect("server read");
            s.process_new_packets().expect("server process");
            let mut buf = Vec::new();
            s.write_tls(&mut buf).expect("server write");
            c.read_tls(&mut buf.as_slice()).expect("client read");
            c.process_new_packets().expect("client process");
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        (c.dangerous_extract_secrets().expect("client secrets"), s.dangerous_extract_secrets().expect("server secrets"))
    }

    #[test]
    fn each_sides_transmit_keys_and_sequence_are_the_peers_receive_keys() {
        use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let (client, server) = handshake(TLS13_AES_128_GCM_SHA256);
        let info = |(seq, secrets): &(u64, ConnectionTrafficSecrets)| match crypto_info(true, *seq, secrets).expect("offloadable") {
            TlsCryptoInfo::Aes128Gcm(i) => (i.info.version, i.info.cipher_type, i.key, i.salt, i.iv, i.rec_seq),
            _ => panic!("negotiated AES-128-GCM"),
        };
        let (c_tx, c_rx, s_tx, s_rx) = (info(&client.tx), info(&client.rx), info(&server.tx), info(&server.rx));
        assert_eq!(c_tx, s_rx, "client → server direction");
        assert_eq!(s_tx, c_rx, "server → client direction");
        assert_ne!(c_tx.2, s_tx.2, "the two directions have different keys");
        assert_eq!(c_tx.0, TLS_1_3_VERSION);
        assert_eq!(c_tx.1, nix::libc::TLS_CIPHER_AES_GCM_128);
        // The server sent its session tickets under the application keys: the kernel must
        // continue after them, not from 0.
        assert_eq!(server.tx.0, client.rx.0);
        assert!(server.tx.0 > 0, "tickets advanced the server's sequence");
        assert_eq!(s_tx.5, server.tx.0.to_be_bytes());
    }

    #[test]
    fn chacha_keeps_the_whole_nonce() {
        use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;
        let (client, server) = handshake(TLS13_CHACHA20_POLY1305_SHA256);
        let (TlsCryptoInfo::Chacha20Poly1305(c), TlsCryptoInfo::Chacha20Poly1305(s)) =
            (crypto_info(true, client.tx.0, &client.tx.1).expect("c"), crypto_info(true, server.rx.0, &server.rx.1).expect("s"))
        else {
            panic!("negotiated ChaCha20")
        };
        assert_eq!((c.key, c.iv, c.rec_seq), (s.key, s.iv, s.rec_seq));
        assert_eq!(crypto_info(false, 0, &client.tx.1).map(|_| ()), Ok(()), "TLS 1.2 labelling works too");
    }

    #[test]
    fn detection_reports_why_when_unavailable() {
        match Support::detect() {
            Support::Available => {}
            Support::Unavailable(why) => assert!(why.contains("tcp_available_ulp") || why.contains("`tls`"), "{why}"),
        }
    }
}
