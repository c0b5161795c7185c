//! Certificates for mTLS tests, minted by the binary's own `oxidecar dev-ca`.

use std::path::{Path, PathBuf};

use crate::harness::{TempDir, binary};

/// A development CA in a temporary directory.
pub struct DevCa {
    pub dir: TempDir,
}

impl DevCa {
    pub async fn new(tag: &str) -> DevCa {
        let ca = DevCa { dir: TempDir::new(&format!("ca-{tag}")) };
        ca.mint(&[], &[]).await;
        ca
    }

    /// Runs `oxidecar dev-ca` for `workloads` (NS/SA) with extra flags (e.g. `--validity`).
    pub async fn mint(&self, workloads: &[&str], extra: &[&str]) {
        let mut cmd = tokio::process::Command::new(binary());
        cmd.arg("dev-ca").arg("--dir").arg(&self.dir.0);
        for w in workloads {
            cmd.arg("--workload").arg(w);
        }
        let out = cmd.args(extra).output().await.expect("run oxidecar dev-ca");
        assert!(out.status.success(), "dev-ca failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The directory holding `cert-chain.pem`, `key.pem` and `root-cert.pem` of `workload`.
    pub fn workload_dir(&self, workload: &str) -> PathBuf {
        self.dir.0.join(workload.replace('/', "."))
    }

    pub fn root(&self) -> PathBuf {
        self.dir.0.join("root-cert.pem")
    }
}

/// The `identity:` line of a config for the files in `dir`, trusting `trust_bundle`.
pub fn identity_yaml(dir: &Path, trust_bundle: &Path) -> String {
    format!(
        "identity: {{ cert_chain: {}, private_key: {}, trust_bundle: {} }}\n",
        dir.join("cert-chain.pem").display(),
        dir.join("key.pem").display(),
        trust_bundle.display()
    )
}

/// The SPIFFE ID dev-ca gives `workload` in the default trust domain.
pub fn spiffe(workload: &str) -> String {
    let (ns, sa) = workload.split_once('/').expect("NS/SA");
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
}
