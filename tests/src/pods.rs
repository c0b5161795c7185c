//! Pods on real network stacks: each pod is a network namespace with an `eth0` veth whose peer
//! sits on a bridge in a namespace of its own, so pods reach each other by address exactly as on
//! a node. A pod runs unmodified apps and, when asked, oxidecar as uid 1337 with `oxidecar capture`
//! applied. Every name carries the test process id and a random suffix, so tests run in parallel;
//! everything is torn down on drop (also when a test panics), and namespaces left by a test
//! process that no longer exists are removed when the harness starts.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`); [`require_netns`] fails the test
//! with a clear message otherwise.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::harness::{TempDir, eventually};

/// Every namespace the harness creates starts with this (then `-<pid>-<suffix>`).
pub const PREFIX: &str = "oxc";
/// The sidecar's uid, as in Istio: capture leaves its connections alone.
pub const PROXY_UID: u32 = 1337;
/// How long a sidecar may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a setup command; panics naming it and its stderr when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Fails the test unless it runs as root with working `ip netns`, nft and setpriv: these tests
/// must never pass silently on a machine that cannot run them.
pub fn require_netns() {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    assert_eq!(uid, "0", "the pod tests need root (network namespaces, nftables): run `sudo bash tests/run` (see docs/PODS.md)");
    for (tool, args, package) in [("ip", &["netns", "list"][..], "iproute2"), ("nft", &["--version"][..], "nftables"), ("setpriv", &["--version"][..], "util-linux"), ("curl", &["--version"][..], "curl")] {
        let ok = Command::new(tool).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        assert!(ok, "the pod tests need `{tool} {}` to work (Debian package {package}; tests/run installs it)", args.join(" "));
    }
    clean_leftovers();
}

/// Removes namespaces (and their processes) of earlier test processes that died without cleaning up.
fn clean_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else { continue };
            let Some(rest) = name.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else { continue };
            let pid = rest.split('-').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
                delete_namespace(name);
            }
        }
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("oxidecar-podbin-")
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
}

/// Kills every process inside the namespace, then deletes it.
fn delete_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
}

/// A short random suffix (no extra crate: the clock and a counter are random enough for names).
fn suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let n = nanos.wrapping_mul(2654435761).wrapping_add(COUNTER.fetch_add(1, Ordering::SeqCst).wrapping_mul(40503));
    format!("{:04x}", n & 0xffff)
}

/// The oxidecar binary where uid 1337 can run it (the build directory under /root is closed to it).
fn sidecar_binary() -> PathBuf {
    static BIN: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut bin = BIN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = bin.as_ref() {
        return b.clone();
    }
    let dir = std::env::temp_dir().join(format!("oxidecar-podbin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("binary dir");
    run("chmod", &["755", &dir.to_string_lossy()]);
    let target = dir.join("oxidecar");
    let source = crate::harness::binary();
    if std::fs::hard_link(&source, &target).is_err() {
        std::fs::copy(&source, &target).expect("copy the oxidecar binary");
    }
    *bin = Some(target.clone());
    target
}

/// One test's network: a bridge namespace and the pods attached to it, all on one /24 (and one
/// IPv6 /64).
pub struct Net {
    pub id: String,
    bridge: String,
    /// The first three octets of the pods' IPv4 addresses.
    v4: [u8; 3],
    next_host: Mutex<u8>,
}

impl Net {
    /// A fresh bridge. Fails the test when the machine cannot run pods.
    pub fn new() -> Net {
        require_netns();
        let id = format!("{PREFIX}-{}-{}", std::process::id(), suffix());
        let bridge = format!("{id}-br");
        // Namespaces are isolated, so the subnet only has to be unique inside this test; it is
        // varied anyway so that captures from different tests are easy to tell apart.
        let n = u16::from_str_radix(&id[id.len() - 4..], 16).unwrap_or(0);
        let v4 = [10, 200 + (n % 50) as u8, (n >> 8) as u8];
        let net = Net { id, bridge, v4, next_host: Mutex::new(2) };
        ip(&["netns", "add", &net.bridge]);
        ip(&["-n", &net.bridge, "link", "set", "lo", "up"]);
        ip(&["-n", &net.bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.bridge, "link", "set", "br0", "up"]);
        net
    }

    /// A new pod on this network, with nothing running in it yet.
    pub fn pod(&self, name: &str) -> Pod {
        let host = {
            let mut next = self.next_host.lock().unwrap_or_else(|e| e.into_inner());
            let h = *next;
            *next += 1;
            h
        };
        let ns = format!("{}-{name}", self.id);
        let v4 = Ipv4Addr::new(self.v4[0], self.v4[1], self.v4[2], host);
        let v6 = Ipv6Addr::new(0xfd00, 0x6f78, u16::from(self.v4[1]), u16::from(self.v4[2]), 0, 0, 0, u16::from(host));
        let port = format!("v{host}");
        let pod = Pod {
            name: name.to_owned(),
            ns: ns.clone(),
            ip: v4,
            ip6: v6,
            veth: port.clone(),
            children: Mutex::new(Vec::new()),
            dir: TempDir::new(&format!("pod-{name}")),
        };
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &self.bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        ip(&["-n", &self.bridge, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        run("chmod", &["755", &pod.dir.0.to_string_lossy()]);
        pod
    }

    /// The bridge namespace (tcpdump there sees every packet between pods).
    pub fn bridge_ns(&self) -> &str {
        &self.bridge
    }

    /// Starts tcpdump in the bridge namespace on `pod`'s veth: every packet to and from the pod
    /// that matches `filter` (pcap filter syntax), as it crosses the wire.
    pub async fn capture(&self, pod: &Pod, filter: &str) -> PacketCapture {
        let dir = TempDir::new(&format!("pcap-{}", pod.name));
        let file = dir.0.join("wire.pcap");
        let log_path = dir.0.join("tcpdump.log");
        let log = std::fs::File::create(&log_path).expect("tcpdump log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.bridge, "tcpdump", "-i", &pod.veth, "--immediate-mode", "-U", "-n", "-s", "0", "-w"])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tcpdump (Debian package tcpdump)");
        let listening = eventually(Duration::from_secs(10), || async {
            std::fs::read_to_string(&log_path).unwrap_or_default().contains("listening on").then_some(())
        })
        .await;
        assert!(listening.is_some(), "tcpdump did not start: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
        PacketCapture { child, file, log: log_path, _dir: dir }
    }
}

/// A running tcpdump; [`PacketCapture::finish`] stops it and returns what it saw.
pub struct PacketCapture {
    child: Child,
    file: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl PacketCapture {
    /// Stops the capture (SIGINT, so tcpdump flushes) and returns the pcap file's bytes and
    /// tcpdump's own report (packets captured, dropped).
    pub async fn finish(mut self) -> (Vec<u8>, String) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let child = &mut self.child;
        eventually(Duration::from_secs(5), || {
            let done = child.try_wait().ok().flatten().map(|_| ());
            async move { done }
        })
        .await;
        (std::fs::read(&self.file).unwrap_or_default(), std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for PacketCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        delete_namespace(&self.bridge);
    }
}

/// A network namespace with an address on the bridge and the processes started in it.
pub struct Pod {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    /// The pod's veth end on the bridge (in the bridge namespace).
    pub veth: String,
    children: Mutex<Vec<(String, Child)>>,
    dir: TempDir,
}

/// What a command run in a pod printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl Pod {
    /// A directory of this pod's files (readable by the sidecar's uid).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Starts `argv` inside the pod as root (an app), kept until the pod is dropped.
    pub fn spawn(&self, what: &str, argv: &[&str]) {
        self.spawn_with(what, &[], argv);
    }

    /// Starts `argv` inside the pod behind `wrapper` (e.g. `setpriv ...`), logging to the pod dir.
    fn spawn_with(&self, what: &str, wrapper: &[&str], argv: &[&str]) {
        let log = std::fs::File::create(self.dir().join(format!("{what}.log"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(wrapper)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} in pod {}: {e}", self.name));
        self.children.lock().unwrap_or_else(|e| e.into_inner()).push((what.to_owned(), child));
    }

    /// The log of a process started with [`Pod::spawn`] or [`Pod::sidecar`].
    pub fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{what}.log"))).unwrap_or_default()
    }

    /// Runs `argv` inside the pod as root and waits for it (tokio, so in-process servers keep running).
    pub async fn exec(&self, argv: &[&str]) -> Output {
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in pod {}: {e}", self.name));
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `curl` from inside the pod: (HTTP status, body); status 0 when no response came.
    pub async fn curl(&self, url: &str, extra: &[&str]) -> (u16, String) {
        let mut argv = vec!["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"];
        argv.extend_from_slice(extra);
        argv.push(url);
        let out = self.exec(&argv).await;
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "000"));
        (code.trim().parse().unwrap_or(0), if out.ok() { body.to_owned() } else { format!("{body}{}", out.stderr) })
    }

    /// Starts oxidecar as uid 1337 with `config` (YAML), applies `oxidecar capture` with
    /// `capture_flags` and waits until the sidecar is ready. `run_flags` go to `oxidecar run`.
    pub async fn sidecar(&self, config: &str, run_flags: &[&str], capture_flags: &[&str]) {
        let file = self.dir().join("mesh.yaml");
        std::fs::write(&file, config).expect("write sidecar config");
        let bin = sidecar_binary();
        let bin = bin.to_string_lossy();
        let uid = PROXY_UID.to_string();
        let wrapper = ["setpriv", "--reuid", &uid, "--regid", &uid, "--clear-groups", "--"];
        let mut argv = vec![&*bin, "run", "--config", file.to_str().expect("utf-8 path"), "--concurrency", "2"];
        argv.extend_from_slice(run_flags);
        self.spawn_with("sidecar", &wrapper, &argv);
        let mut capture = vec![&*bin, "capture"];
        capture.extend_from_slice(capture_flags);
        let applied = self.exec(&capture).await;
        assert!(applied.ok(), "oxidecar capture in pod {} failed: {}", self.name, applied.stderr);
        let ready = eventually(READY_TIMEOUT, || async {
            self.exec(&["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:15000/ready"]).await.ok().then_some(())
        })
        .await;
        assert!(ready.is_some(), "sidecar in pod {} did not become ready; its log:\n{}", self.name, self.log("sidecar"));
    }

    /// Copies `workload`'s certificate, key and the CA root from `ca` into the pod, readable by the
    /// sidecar's uid only, and returns the config's `identity:` line for them.
    pub fn install_identity(&self, ca: &crate::mtls::DevCa, workload: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let certs = self.dir().join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let from = ca.workload_dir(workload);
        for (src, name) in [(from.join("cert-chain.pem"), "cert-chain.pem"), (from.join("key.pem"), "key.pem"), (ca.root(), "root-cert.pem")] {
            let dst = certs.join(name);
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            std::os::unix::fs::chown(&dst, Some(PROXY_UID), Some(PROXY_UID)).expect("chown certificate");
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).expect("chmod certificate");
        }
        std::os::unix::fs::chown(&certs, Some(PROXY_UID), Some(PROXY_UID)).expect("chown certs dir");
        crate::mtls::identity_yaml(&certs, &certs.join("root-cert.pem"))
    }

    /// Rewrites the sidecar's config file (it reloads on change).
    pub fn rewrite_sidecar_config(&self, config: &str) {
        let file = self.dir().join("mesh.yaml");
        let tmp = self.dir().join("mesh.yaml.tmp");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, &file).expect("replace config");
    }

    /// The sidecar's Prometheus text (port 15090 is never captured), once no request is in flight.
    pub async fn metrics(&self) -> String {
        let fetch = || async {
            let (code, body) = self.curl("http://127.0.0.1:15090/stats/prometheus", &[]).await;
            (code == 200).then_some(body)
        };
        let settled = eventually(Duration::from_secs(5), || async {
            fetch().await.filter(|m| crate::harness::metric_sum(m, "oxidecar_http_active_requests", &[]) == 0.0)
        })
        .await;
        match settled {
            Some(m) => m,
            None => fetch().await.unwrap_or_default(),
        }
    }

    /// Waits until something listens on TCP `port` inside the pod.
    pub async fn wait_listening(&self, port: u16) {
        let filter = format!("sport = :{port}");
        let up = eventually(Duration::from_secs(20), || async {
            let out = self.exec(&["ss", "-Htln", &filter]).await;
            (!out.stdout.trim().is_empty()).then_some(())
        })
        .await;
        assert!(up.is_some(), "nothing listens on port {port} in pod {}", self.name);
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (_, child) in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what its pods said (OXIDECAR_POD_LOGS=1 shows it always).
        if std::thread::panicking() || std::env::var_os("OXIDECAR_POD_LOGS").is_some() {
            for (what, _) in children.iter() {
                eprintln!("--- pod {} {what} log ---\n{}", self.name, self.log(what));
            }
        }
        delete_namespace(&self.ns);
    }
}
