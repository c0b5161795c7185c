//! The log filter, changeable at run time: a default level plus per-target levels, installed
//! through a `tracing_subscriber` reload handle so the admin port's `/logging` can change it.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// Levels `/logging` accepts (Envoy's `critical` is our `error`).
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Targets quieted by default: Pingora logs an error each time a pooled connection cannot be
/// reused (routine after a retry), and its other chatter is below what an operator needs.
const QUIET: &str = "pingora=warn,pingora_core=warn,pingora_proxy=warn,pingora_core::connectors=off";

/// The filter as it stands: a default level, per-target levels, and directives we keep verbatim
/// (span filters from `RUST_LOG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    pub default: String,
    pub targets: BTreeMap<String, String>,
    pub verbatim: Vec<String>,
}

impl LogFilter {
    /// Parses `EnvFilter`-style directives: `info,access=debug,pingora=warn`.
    pub fn parse(directives: &str) -> Self {
        let mut f = LogFilter { default: "info".into(), targets: BTreeMap::new(), verbatim: Vec::new() };
        for d in directives.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                _ if d.contains('[') => f.verbatim.push(d.to_string()),
                Some((target, level)) => {
                    f.targets.insert(target.to_string(), level.to_ascii_lowercase());
                }
                None if LEVELS.contains(&d.to_ascii_lowercase().as_str()) => f.default = d.to_ascii_lowercase(),
                None => {
                    f.targets.insert(d.to_string(), "trace".into());
                }
            }
        }
        f
    }

    /// The directive string `EnvFilter` reads.
    pub fn directives(&self) -> String {
        let mut out = self.default.clone();
        for (t, l) in &self.targets {
            out.push_str(&format!(",{t}={l}"));
        }
        for v in &self.verbatim {
            out.push(',');
            out.push_str(v);
        }
        out
    }

    /// Applies `level` to everything: the default and every named target (as Envoy's
    /// `/logging?level=` sets every logger).
    pub fn set_all(&mut self, level: &str) -> Result<(), String> {
        let level = check_level(level)?;
        self.default = level.clone();
        for l in self.targets.values_mut() {
            *l = level.clone();
        }
        Ok(())
    }

    /// Sets one target's level.
    pub fn set_target(&mut self, target: &str, level: &str) -> Result<(), String> {
        if target.is_empty() || !target.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-') {
            return Err(format!("{target:?} is not a log target (a module path such as oxidecar::http or access)"));
        }
        let level = check_level(level)?;
        self.targets.insert(target.to_string(), level);
        Ok(())
    }
}

fn check_level(level: &str) -> Result<String, String> {
    let l = level.to_ascii_lowercase();
    let l = if l == "critical" || l == "err" { "error".to_string() } else { l };
    if LEVELS.contains(&l.as_str()) { Ok(l) } else { Err(format!("{level:?} is not a level (one of {})", LEVELS.join(", "))) }
}

type Handle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

struct Control {
    handle: Handle,
    filter: Mutex<LogFilter>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Installs the global subscriber: `RUST_LOG` when set, else `level` with Pingora kept quiet.
pub fn init(level: &str, json: bool) {
    let level = match check_level(level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("oxidecar: --log-level: {e}; using info");
            "info".into()
        }
    };
    let directives = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| format!("{level},{QUIET}"));
    let filter = LogFilter::parse(&directives);
    let env_filter = EnvFilter::try_new(filter.directives()).unwrap_or_else(|e| {
        eprintln!("oxidecar: RUST_LOG {directives:?}: {e}; using {level}");
        EnvFilter::new(format!("{level},{QUIET}"))
    });
    let (layer, handle) = reload::Layer::new(env_filter);
    // Colours only on a terminal: a log file or a container log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(layer);
    let installed = if json { registry.with(fmt.json()).try_init() } else { registry.with(fmt).try_init() };
    if installed.is_ok() {
        let _ = CONTROL.set(Control { handle, filter: Mutex::new(filter) });
    }
}

/// The current filter, `None` when logging was not initialized by [`init`].
pub fn current() -> Option<LogFilter> {
    CONTROL.get().and_then(|c| c.filter.lock().ok().map(|f| f.clone()))
}

/// Changes the filter with `change` and installs the result.
pub fn update(change: impl FnOnce(&mut LogFilter) -> Result<(), String>) -> Result<LogFilter, String> {
    let control = CONTROL.get().ok_or("logging is not under oxidecar's control")?;
    let mut filter = control.filter.lock().map_err(|_| "log filter lock poisoned")?;
    let mut next = filter.clone();
    change(&mut next)?;
    let env_filter = EnvFilter::try_new(next.directives()).map_err(|e| format!("{}: {e}", next.directives()))?;
    control.handle.reload(env_filter).map_err(|e| format!("cannot install the log filter: {e}"))?;
    tracing::info!(filter = %next.directives(), "log levels changed");
    *filter = next.clone();
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_change_and_print() {
        let mut f = LogFilter::parse("info,pingora=warn,access=debug");
        assert_eq!(f.default, "info");
        assert_eq!(f.targets.get("access").map(String::as_str), Some("debug"));
        f.set_target("oxidecar::http", "trace").expect("target");
        assert_eq!(f.directives(), "info,access=debug,oxidecar::http=trace,pingora=warn");
        f.set_all("critical").expect("level");
        assert_eq!(f.directives(), "error,access=error,oxidecar::http=error,pingora=error");
        assert!(f.set_all("loud").is_err_and(|e| e.contains("\"loud\" is not a level")));
        assert!(f.set_target("a b", "info").is_err_and(|e| e.contains("\"a b\" is not a log target")));
        assert!(EnvFilter::try_new(f.directives()).is_ok());
    }
}
