//! `oxidecar dev-ca`: a throwaway certificate authority for local runs and tests. It mints a root
//! (kept in the directory and reused on later runs) and workload certificates whose URI SAN is the
//! SPIFFE ID `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`, laid out as Istio mounts them: `cert-chain.pem`,
//! `key.pem` and `root-cert.pem` per workload.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

pub const ROOT_CERT: &str = "root-cert.pem";
pub const ROOT_KEY: &str = "root-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum DevCaError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, problem: impl ToString) -> DevCaError {
    DevCaError::File { path: path.to_path_buf(), problem: problem.to_string() }
}

fn ca_params(trust_domain: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "oxidecar dev");
    dn.push(DnType::CommonName, format!("oxidecar dev CA for {trust_domain}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
    params.not_after = (SystemTime::now() + Duration::from_secs(10 * 365 * 86400)).into();
    params
}

/// The CA in `dir`, created on first use.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    trust_domain: String,
}

impl DevCa {
    pub fn open_or_create(dir: &Path, trust_domain: &str) -> Result<Self, DevCaError> {
        if trust_domain.is_empty() || trust_domain.contains(['/', ':', ' ']) {
            return Err(DevCaError::Invalid(format!("--trust-domain {trust_domain:?} is not a trust domain name")));
        }
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let (cert_path, key_path) = (dir.join(ROOT_CERT), dir.join(ROOT_KEY));
        let params = ca_params(trust_domain);
        if key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(|e| file_err(&key_path, e))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&key_path, format!("not a private key: {e}")))?;
            let root_pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
            return Ok(Self { issuer: Issuer::new(params, key), root_pem, trust_domain: trust_domain.into() });
        }
        let key = KeyPair::generate().map_err(|e| DevCaError::Invalid(format!("generating the CA key: {e}")))?;
        let cert = params.self_signed(&key).map_err(|e| DevCaError::Invalid(format!("signing the CA: {e}")))?;
        let root_pem = cert.pem();
        write_private(&key_path, &key.serialize_pem())?;
        std::fs::write(&cert_path, &root_pem).map_err(|e| file_err(&cert_path, e))?;
        Ok(Self { issuer: Issuer::new(params, key), root_pem, trust_domain: trust_domain.into() })
    }

    #[cfg(test)]
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Mints a workload certificate for `ns/sa`, valid from `now - backdate` for `validity`.
    /// Returns the SPIFFE ID, the chain PEM and the key PEM.
    pub fn issue(&self, workload: &str, validity: Duration, backdate: Duration) -> Result<(String, String, String), DevCaError> {
        let (ns, sa) = workload
            .split_once('/')
            .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| DevCaError::Invalid(format!("--workload {workload:?}: expected NAMESPACE/SERVICE_ACCOUNT")))?;
        let spiffe_id = format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = spiffe_id.clone().try_into().map_err(|e| DevCaError::Invalid(format!("{spiffe_id}: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let start = SystemTime::now() - backdate;
        params.not_before = start.into();
        params.not_after = (start + validity).into();
        let key = KeyPair::generate().map_err(|e| DevCaError::Invalid(format!("generating a key: {e}")))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| DevCaError::Invalid(format!("signing {spiffe_id}: {e}")))?;
        Ok((spiffe_id, cert.pem(), key.serialize_pem()))
    }

    /// Writes `cert-chain.pem`, `key.pem` and `root-cert.pem` for `workload` under
    /// `dir/NS.SA/` and returns that directory and the SPIFFE ID.
    pub fn write_workload(&self, dir: &Path, workload: &str, validity: Duration, backdate: Duration) -> Result<(PathBuf, String), DevCaError> {
        let (id, chain, key) = self.issue(workload, validity, backdate)?;
        let out = dir.join(workload.replace('/', "."));
        std::fs::create_dir_all(&out).map_err(|e| file_err(&out, e))?;
        std::fs::write(out.join("cert-chain.pem"), chain).map_err(|e| file_err(&out.join("cert-chain.pem"), e))?;
        write_private(&out.join("key.pem"), &key)?;
        std::fs::write(out.join(ROOT_CERT), &self.root_pem).map_err(|e| file_err(&out.join(ROOT_CERT), e))?;
        Ok((out, id))
    }
}

fn write_private(path: &Path, pem: &str) -> Result<(), DevCaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(|e| file_err(path, e))?;
    f.write_all(pem.as_bytes()).map_err(|e| file_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::WorkloadCerts;

    #[test]
    fn minted_workloads_carry_their_spiffe_id_and_chain_to_the_reused_root() {
        let dir = std::env::temp_dir().join(format!("oxidecar-devca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = DevCa::open_or_create(&dir, "cluster.local").expect("ca");
        let (out, id) = ca.write_workload(&dir, "default/reviews", Duration::from_secs(3600), Duration::ZERO).expect("issue");
        assert_eq!(id, "spiffe://cluster.local/ns/default/sa/reviews");
        // A second run reuses the root, so both workloads trust each other.
        let again = DevCa::open_or_create(&dir, "cluster.local").expect("reopen");
        assert_eq!(again.root_pem(), ca.root_pem());
        let (out2, _) = again.write_workload(&dir, "default/ratings", Duration::from_secs(3600), Duration::ZERO).expect("issue");
        for d in [&out, &out2] {
            let read = |n: &str| std::fs::read(d.join(n)).expect("file");
            let certs = WorkloadCerts::from_pem(&read("cert-chain.pem"), &read("key.pem"), &read("root-cert.pem")).expect("valid identity");
            assert!(certs.spiffe_id.starts_with("spiffe://cluster.local/ns/default/sa/"));
        }
        assert!(matches!(ca.issue("nope", Duration::from_secs(1), Duration::ZERO), Err(DevCaError::Invalid(m)) if m.contains("NAMESPACE/SERVICE_ACCOUNT")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
