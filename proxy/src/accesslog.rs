//! The access log: one line per HTTP request and per TCP connection, as JSON or text, on stdout or
//! appended to a file. Lines go through a bounded queue to a writer thread, so a slow disk never
//! stalls a request; lines that do not fit are counted in `oxidecar_access_log_dropped_total`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use oxidecar_xds::model::{AccessLog, AccessLogFormat};
use serde::Serialize;

/// Lines queued for the writer before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;

/// One access log record. Field names follow Envoy's command operators in snake case.
#[derive(Debug, Default, Serialize)]
pub struct Entry<'a> {
    pub start_time: String,
    /// `http` or `tcp`.
    pub kind: &'static str,
    pub listener: &'a str,
    /// `outbound` or `inbound`.
    pub direction: &'static str,
    pub method: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub path: Option<&'a str>,
    /// `HTTP/1.1`, `HTTP/2` or `TCP`.
    pub protocol: &'static str,
    pub response_code: u16,
    pub response_flags: &'a str,
    pub route_name: Option<&'a str>,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_host: Option<String>,
    /// Milliseconds from the first byte of the request to the last byte of the response.
    pub duration: u64,
    /// Milliseconds the upstream took to answer (request sent → response headers).
    pub upstream_service_time: Option<u64>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub downstream_remote_address: Option<String>,
    pub x_forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub lane: Option<&'a str>,
    pub served_lane: Option<&'a str>,
    pub downstream_peer_principal: Option<&'a str>,
    pub upstream_peer_principal: Option<&'a str>,
    pub retries: u32,
}

/// RFC 3339 with milliseconds, for a start `elapsed` ago.
pub fn start_time(elapsed: Duration) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() - elapsed).to_string()
}

impl Entry<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.clear();
        }
    }

    /// Envoy-like text: `[start] "METHOD PATH PROTO" CODE FLAGS RX TX DUR UPSTREAM_TIME "XFF" "UA"
    /// "REQ-ID" "AUTHORITY" "UPSTREAM" CLUSTER ROUTE DOWNSTREAM lane trace peer`.
    fn write_text(&self, out: &mut Vec<u8>) {
        fn s<T: std::fmt::Display>(v: Option<T>) -> String {
            v.map_or_else(|| "-".to_string(), |v| v.to_string())
        }
        let _ = write!(
            out,
            "[{}] \"{} {} {}\" {} {} {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} lane={} trace_id={} peer={}",
            self.start_time,
            s(self.method),
            s(self.path),
            self.protocol,
            self.response_code,
            self.response_flags,
            self.bytes_received,
            self.bytes_sent,
            self.duration,
            s(self.upstream_service_time),
            s(self.x_forwarded_for),
            s(self.user_agent),
            s(self.request_id),
            s(self.authority),
            s(self.upstream_host.as_deref()),
            s(self.upstream_cluster),
            s(self.route_name),
            s(self.downstream_remote_address.as_deref()),
            s(self.lane),
            s(self.trace_id),
            s(self.downstream_peer_principal),
        );
    }
}

/// An open destination for lines, with the settings it was opened for.
pub struct Sink {
    settings: AccessLog,
    tx: SyncSender<Vec<u8>>,
}

/// The current sink, reopened when the config's access log settings change.
pub struct AccessLogger {
    current: ArcSwapOption<Sink>,
    open_lock: std::sync::Mutex<()>,
    dropped: prometheus::IntCounter,
}

impl AccessLogger {
    pub fn new(dropped: prometheus::IntCounter) -> Self {
        Self { current: ArcSwapOption::empty(), open_lock: std::sync::Mutex::new(()), dropped }
    }

    /// Writes `entry` as `settings` say (nothing when they say off).
    pub fn log(&self, settings: &AccessLog, entry: &Entry<'_>) {
        if settings.format == AccessLogFormat::Off {
            return;
        }
        let Some(sink) = self.sink(settings) else { return };
        let mut line = Vec::with_capacity(512);
        match settings.format {
            AccessLogFormat::Json => entry.write_json(&mut line),
            AccessLogFormat::Text => entry.write_text(&mut line),
            AccessLogFormat::Off => return,
        }
        if line.is_empty() {
            return;
        }
        line.push(b'\n');
        match sink.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    fn sink(&self, settings: &AccessLog) -> Option<Arc<Sink>> {
        if let Some(s) = self.current.load_full()
            && s.settings == *settings
        {
            return Some(s);
        }
        let _guard = self.open_lock.lock().ok()?;
        if let Some(s) = self.current.load_full()
            && s.settings == *settings
        {
            return Some(s);
        }
        match open(settings) {
            Ok(sink) => {
                let sink = Arc::new(sink);
                // The old sink's writer ends once its last line is written and its sender dropped.
                self.current.store(Some(sink.clone()));
                Some(sink)
            }
            Err(e) => {
                tracing::error!(path = ?settings.path, error = %e, "cannot open the access log; lines are dropped");
                None
            }
        }
    }
}

fn is_stdout(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p == Path::new("/dev/stdout") || p == Path::new("-"))
}

fn open(settings: &AccessLog) -> std::io::Result<Sink> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE_LINES);
    let out: Box<dyn Write + Send> = if is_stdout(settings.path.as_deref()) {
        Box::new(std::io::stdout())
    } else {
        let path: PathBuf = settings.path.clone().unwrap_or_default();
        Box::new(std::fs::OpenOptions::new().create(true).append(true).open(&path)?)
    };
    std::thread::Builder::new().name("access-log".into()).spawn(move || write_lines(rx, out))?;
    Ok(Sink { settings: settings.clone(), tx })
}

/// Writes queued lines, flushing whenever the queue runs empty; ends when the sink is dropped.
fn write_lines(rx: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let mut result = out.write_all(&line);
        while let Ok(line) = rx.try_recv() {
            result = result.and_then(|()| out.write_all(&line));
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "cannot write the access log");
        }
    }
}

/// What the access log needs of one proxied TCP connection.
pub struct TcpLog<'a> {
    pub listener: &'a str,
    pub direction: oxidecar_xds::model::TrafficDirection,
    pub cluster: &'a str,
    pub downstream: Option<std::net::SocketAddr>,
    pub start: std::time::Instant,
}

impl TcpLog<'_> {
    /// Logs the connection once it closed: `bytes` = (received from, sent to) the downstream;
    /// `principals` = the verified (downstream, upstream) peer identities under mTLS.
    pub fn write(
        &self,
        shared: &crate::shared::Shared,
        tables: &crate::tables::Tables,
        upstream: Option<std::net::SocketAddr>,
        flags: &str,
        bytes: (u64, u64),
        principals: (Option<&str>, Option<&str>),
    ) {
        let settings = &tables.snapshot.telemetry.access_log;
        if settings.format == AccessLogFormat::Off {
            return;
        }
        let entry = Entry {
            start_time: start_time(self.start.elapsed()),
            kind: "tcp",
            listener: self.listener,
            direction: match self.direction {
                oxidecar_xds::model::TrafficDirection::Outbound => "outbound",
                oxidecar_xds::model::TrafficDirection::Inbound => "inbound",
            },
            protocol: "TCP",
            response_flags: flags,
            upstream_cluster: Some(self.cluster),
            upstream_host: upstream.map(|a| a.to_string()),
            duration: self.start.elapsed().as_millis() as u64,
            bytes_received: bytes.0,
            bytes_sent: bytes.1,
            downstream_remote_address: self.downstream.map(|a| a.to_string()),
            downstream_peer_principal: principals.0,
            upstream_peer_principal: principals.1,
            ..Entry::default()
        };
        shared.access_log.log(settings, &entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            start_time: "2026-01-02T03:04:05.678Z".into(),
            kind: "http",
            listener: "out",
            direction: "outbound",
            method: Some("GET"),
            path: Some("/a?b=1"),
            protocol: "HTTP/1.1",
            response_code: 200,
            response_flags: "-",
            upstream_cluster: Some("app"),
            upstream_host: Some("127.0.0.1:8080".into()),
            duration: 3,
            upstream_service_time: Some(2),
            bytes_sent: 10,
            ..Entry::default()
        }
    }

    #[test]
    fn json_lines_carry_envoy_like_fields() {
        let mut out = Vec::new();
        entry().write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["response_code"], 200);
        assert_eq!(v["upstream_host"], "127.0.0.1:8080");
        assert_eq!(v["upstream_service_time"], 2);
        assert!(v["lane"].is_null());
    }

    #[test]
    fn text_lines_follow_envoys_order() {
        let mut out = Vec::new();
        entry().write_text(&mut out);
        let line = String::from_utf8(out).expect("utf8");
        assert!(
            line.starts_with("[2026-01-02T03:04:05.678Z] \"GET /a?b=1 HTTP/1.1\" 200 - 0 10 3 2 \"-\" \"-\" \"-\" \"-\" \"127.0.0.1:8080\" app - -"),
            "{line}"
        );
    }

    #[test]
    fn lines_reach_the_file_and_off_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("oxidecar-accesslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("access.log");
        let logger = AccessLogger::new(prometheus::IntCounter::new("d", "d").expect("counter"));
        let json = AccessLog { format: AccessLogFormat::Json, path: Some(file.clone()) };
        logger.log(&AccessLog { format: AccessLogFormat::Off, path: Some(file.clone()) }, &entry());
        logger.log(&json, &entry());
        logger.log(&json, &entry());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut lines = 0;
        while std::time::Instant::now() < deadline {
            lines = std::fs::read_to_string(&file).map(|s| s.lines().count()).unwrap_or(0);
            if lines == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
