//! Configuration: the TOML file, its defaults, validation, and the indicator feeds it
//! names.
//!
//! The default configuration and the Remcos feed are compiled into the binary from
//! `config/`, so `c2watch replay FILE` works from any directory. Relative feed paths
//! are resolved against the configuration file's directory; for the built-in
//! configuration they name the built-in feeds. Unknown keys are refused with their name
//! and position, so a typo never silently falls back to a default.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::feed::{self, FeedError};
use crate::indicator::{Indicator, IndicatorSet};

/// The built-in configuration, the same text as `config/c2watch.toml`.
pub const BUILTIN_CONFIG: &str = include_str!("../config/c2watch.toml");
/// Feeds compiled into the binary, by the file name the built-in configuration uses.
pub const BUILTIN_FEEDS: &[(&str, &str)] = &[(
    "threatfox-remcos.csv",
    include_str!("../config/threatfox-remcos.csv"),
)];
/// Origin name of the built-in configuration in messages.
pub const BUILTIN_ORIGIN: &str = "builtin:c2watch.toml";

/// A configuration that could not be used. `main` exits with 78 (`EX_CONFIG`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The configuration file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys; the message names line, column and key.
    #[error("{file}: {message}")]
    Parse {
        /// The configuration file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{file}: field `{field}`: {reason}")]
    Invalid {
        /// The configuration file.
        file: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A feed could not be read or parsed.
    #[error(transparent)]
    Feed(#[from] FeedError),
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[sensor]`: identity and home networks.
    pub sensor: SensorConfig,
    /// `[capture]`: live capture settings.
    pub capture: CaptureConfig,
    /// `[[feeds]]`: indicator feeds in priority order.
    pub feeds: Vec<FeedConfig>,
    /// `[flow]`: flow tracking and aggregation.
    pub flow: FlowConfig,
    /// `[output]`: where records go.
    pub output: OutputConfig,
}

/// `[sensor]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Syslog HOSTNAME and CEF `dvchost`; the machine's host name when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Networks that decide `deviceDirection`.
    pub home_networks: Vec<String>,
}

/// `[capture]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Interface for live capture.
    pub interface: String,
    /// Bytes kept of each frame.
    pub snaplen_bytes: u32,
    /// Kernel capture buffer per worker, in bytes.
    pub buffer_bytes: u64,
    /// Capture threads; 0 for one per core.
    pub workers: usize,
    /// Optional BPF prefilter.
    pub bpf_filter: String,
}

/// One `[[feeds]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Feed name, reported with each indicator (`cs6`).
    pub name: String,
    /// Feed file; relative to the configuration file's directory.
    pub path: PathBuf,
}

/// `[flow]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Idle time after which a flow is forgotten.
    pub idle_timeout_secs: u64,
    /// Flows tracked at once.
    pub max_flows: usize,
    /// Aggregation window for repeated flows; 0 disables aggregation.
    pub aggregate_window_secs: u64,
}

/// `[output]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Also print records on standard output.
    pub stdout: bool,
    /// Largest record in bytes, syslog header included.
    pub max_record_bytes: usize,
    /// Alerts that may wait for the sinks.
    pub queue_alerts: usize,
    /// Syslog destinations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syslog: Vec<SyslogConfig>,
}

/// One `[[output.syslog]]` destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `udp://host:port` or `tcp://host:port`.
    pub url: String,
    /// Header form.
    #[serde(default)]
    pub format: SyslogFormat,
    /// Syslog facility.
    #[serde(default)]
    pub facility: Facility,
    /// Message framing on TCP.
    #[serde(default)]
    pub framing: Framing,
}

/// Syslog header form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// `<PRI>Mmm dd hh:mm:ss HOST CEF:0|...`, the form Microsoft documents for CEF.
    #[default]
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST CEF - - - CEF:0|...` (RFC 5424, APP-NAME `CEF`).
    Rfc5424,
}

/// TCP message framing (RFC 6587 section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Each message ends with a line feed (non-transparent framing).
    #[default]
    Lf,
    /// Each message is preceded by its length and a space (octet counting).
    OctetCounting,
}

/// Syslog facility (RFC 5424 section 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Local0,
    Local1,
    Local2,
    Local3,
    #[default]
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility's numeric code.
    pub fn code(self) -> u8 {
        match self {
            Facility::Kern => 0,
            Facility::User => 1,
            Facility::Mail => 2,
            Facility::Daemon => 3,
            Facility::Auth => 4,
            Facility::Syslog => 5,
            Facility::Lpr => 6,
            Facility::News => 7,
            Facility::Uucp => 8,
            Facility::Cron => 9,
            Facility::Authpriv => 10,
            Facility::Ftp => 11,
            f => 16 + (f as u8 - Facility::Local0 as u8),
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        let nets = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];
        SensorConfig {
            name: None,
            home_networks: nets.map(String::from).to_vec(),
        }
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: String::new(),
            snaplen_bytes: 256,
            buffer_bytes: 64 << 20,
            workers: 0,
            bpf_filter: String::new(),
        }
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            idle_timeout_secs: 120,
            max_flows: 65_536,
            aggregate_window_secs: 300,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            stdout: false,
            max_record_bytes: 1024,
            queue_alerts: 4096,
            syslog: vec![],
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sensor: SensorConfig::default(),
            capture: CaptureConfig::default(),
            feeds: vec![FeedConfig {
                name: "threatfox-remcos".into(),
                path: "threatfox-remcos.csv".into(),
            }],
            flow: FlowConfig::default(),
            output: OutputConfig::default(),
        }
    }
}

/// Where a configuration came from: feed paths are resolved against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The compiled-in configuration.
    Builtin,
    /// A file.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin => f.write_str(BUILTIN_ORIGIN),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A parsed and validated configuration with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings.
    pub config: Config,
    /// The file they came from.
    pub origin: Origin,
    /// Home networks, parsed.
    pub home_networks: Vec<IpNet>,
}

/// Reads, parses and validates the configuration at `path`, or the built-in one.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (origin, text) = match path {
        None => (Origin::Builtin, BUILTIN_CONFIG.to_string()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                file: p.display().to_string(),
                source,
            })?;
            (Origin::File(p.to_path_buf()), text)
        }
    };
    parse(&text, origin)
}

/// Parses and validates configuration text.
pub fn parse(text: &str, origin: Origin) -> Result<Loaded, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: origin.to_string(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    let home_networks = validate(&config, &origin)?;
    Ok(Loaded {
        config,
        origin,
        home_networks,
    })
}

/// Checks ranges and formats; returns the parsed home networks.
fn validate(config: &Config, origin: &Origin) -> Result<Vec<IpNet>, ConfigError> {
    let invalid = |field: &str, reason: String| ConfigError::Invalid {
        file: origin.to_string(),
        field: field.into(),
        reason,
    };
    if let Some(name) = &config.sensor.name {
        check_sensor_name(name).map_err(|r| invalid("sensor.name", r))?;
    }
    let nets = config
        .sensor
        .home_networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        &format!("sensor.home_networks[{i}]"),
                        format!("`{n}` is not a network"),
                    )
                })
        });
    let nets = nets.collect::<Result<Vec<_>, _>>()?;
    let f = &config.flow;
    positive(f.idle_timeout_secs, "flow.idle_timeout_secs").map_err(|(k, r)| invalid(k, r))?;
    positive(f.max_flows as u64, "flow.max_flows").map_err(|(k, r)| invalid(k, r))?;
    positive(config.output.queue_alerts as u64, "output.queue_alerts")
        .map_err(|(k, r)| invalid(k, r))?;
    positive(config.capture.snaplen_bytes.into(), "capture.snaplen_bytes")
        .map_err(|(k, r)| invalid(k, r))?;
    if !(512..=65_000).contains(&config.output.max_record_bytes) {
        let reason = "must be between 512 and 65000".to_string();
        return Err(invalid("output.max_record_bytes", reason));
    }
    for (i, s) in config.output.syslog.iter().enumerate() {
        SyslogUrl::parse(&s.url).map_err(|r| invalid(&format!("output.syslog[{i}].url"), r))?;
    }
    if config.feeds.is_empty() {
        return Err(invalid("feeds", "at least one feed is needed".into()));
    }
    Ok(nets)
}

/// A value that must be above zero.
fn positive(value: u64, field: &'static str) -> Result<(), (&'static str, String)> {
    if value == 0 {
        Err((field, "must be greater than 0".into()))
    } else {
        Ok(())
    }
}

/// A sensor name must be usable as a syslog HOSTNAME (RFC 5424 6.2.4: printable ASCII,
/// at most 255 characters).
pub fn check_sensor_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{name}` has characters other than printable ASCII"
        ));
    }
    Ok(())
}

/// Transport of a syslog destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per record (RFC 5426).
    Udp,
    /// A stream with framing (RFC 6587).
    Tcp,
}

/// A parsed `udp://host:port` or `tcp://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogUrl {
    /// UDP or TCP.
    pub transport: Transport,
    /// `host:port` as given, ready for name resolution.
    pub address: String,
}

impl SyslogUrl {
    /// Parses a syslog destination; the error says what is wrong.
    pub fn parse(url: &str) -> Result<SyslogUrl, String> {
        let (transport, rest) = if let Some(rest) = url.strip_prefix("udp://") {
            (Transport::Udp, rest)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            (Transport::Tcp, rest)
        } else {
            return Err(format!("`{url}` must start with udp:// or tcp://"));
        };
        let rest = rest.trim_end_matches('/');
        let port = rest
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(p))) if !host.is_empty() && p != 0 => Ok(SyslogUrl {
                transport,
                address: rest.to_string(),
            }),
            _ => Err(format!(
                "`{url}` needs a host and a port, e.g. udp://127.0.0.1:514"
            )),
        }
    }
}

/// The sensor name in force: configured, or the machine's host name.
pub fn sensor_name(config: &Config) -> String {
    config.sensor.name.clone().unwrap_or_else(host_name)
}

/// The machine's host name, or `c2watch` if it cannot be read or is unusable.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates
    // within it or truncates, and we stop at the first NUL or the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if rc == 0 && check_sensor_name(&name).is_ok() {
        name
    } else {
        "c2watch".into()
    }
}

/// Where a feed's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    /// A file on disk.
    File(PathBuf),
    /// A feed compiled into the binary.
    Builtin(&'static str, &'static str),
}

/// A feed to load: its name and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Feed name.
    pub name: String,
    /// Where its text is.
    pub source: FeedSource,
}

impl Feed {
    /// Text naming the feed in messages: its path, or `builtin:NAME`.
    pub fn origin(&self) -> String {
        match &self.source {
            FeedSource::File(p) => p.display().to_string(),
            FeedSource::Builtin(name, _) => format!("builtin:{name}"),
        }
    }
}

/// The configured feeds with their paths resolved.
pub fn feeds(loaded: &Loaded) -> Vec<Feed> {
    loaded
        .config
        .feeds
        .iter()
        .map(|f| resolve(f, &loaded.origin))
        .collect()
}

/// Resolves one feed's path against the configuration's origin.
fn resolve(feed: &FeedConfig, origin: &Origin) -> Feed {
    let source = match origin {
        _ if feed.path.is_absolute() => FeedSource::File(feed.path.clone()),
        Origin::Builtin => match BUILTIN_FEEDS
            .iter()
            .find(|(n, _)| Path::new(n) == feed.path)
        {
            Some((name, text)) => FeedSource::Builtin(name, text),
            None => FeedSource::File(feed.path.clone()),
        },
        Origin::File(p) => FeedSource::File(p.parent().unwrap_or(Path::new(".")).join(&feed.path)),
    };
    Feed {
        name: feed.name.clone(),
        source,
    }
}

/// Feeds given on the command line (`--ioc FILE`), named after their file stem.
pub fn feeds_from_paths(paths: &[PathBuf]) -> Vec<Feed> {
    paths
        .iter()
        .map(|p| Feed {
            name: p
                .file_stem()
                .map_or("ioc".into(), |s| s.to_string_lossy().into_owned()),
            source: FeedSource::File(p.clone()),
        })
        .collect()
}

/// What loading the feeds found, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSummary {
    /// Feed name.
    pub name: String,
    /// Where it was read from.
    pub origin: String,
    /// Recognised format.
    pub format: feed::FeedFormat,
    /// Indicators it gave.
    pub indicators: usize,
    /// Rows skipped for their type (domains, URLs, hashes).
    pub skipped_rows: u64,
}

/// Reads and parses every feed and builds one indicator set. Any feed that fails makes
/// the whole load fail, so the caller keeps the set it had.
pub fn load_indicators(feeds: &[Feed]) -> Result<(IndicatorSet, Vec<FeedSummary>), FeedError> {
    let mut all: Vec<Indicator> = Vec::new();
    let mut summaries = Vec::with_capacity(feeds.len());
    for feed in feeds {
        let origin = feed.origin();
        let text = match &feed.source {
            FeedSource::Builtin(_, text) => std::borrow::Cow::Borrowed(*text),
            FeedSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| FeedError {
                    origin: origin.clone(),
                    line: None,
                    field: None,
                    reason: format!("cannot read: {e}"),
                })?
                .into(),
        };
        let parsed = feed::parse_feed(&origin, &feed.name, &text)?;
        summaries.push(FeedSummary {
            name: feed.name.clone(),
            origin,
            format: parsed.format,
            indicators: parsed.indicators.len(),
            skipped_rows: parsed.skipped_rows,
        });
        all.extend(parsed.indicators);
    }
    Ok((IndicatorSet::new(all), summaries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_file_equals_default_and_round_trips() {
        let loaded = load(None).unwrap();
        assert_eq!(loaded.config, Config::default());
        let text = toml::to_string(&Config::default()).unwrap();
        let again = parse(&text, Origin::Builtin).unwrap();
        assert_eq!(again.config, Config::default());
    }

    #[test]
    fn builtin_feed_loads_the_remcos_endpoints() {
        let loaded = load(None).unwrap();
        let (set, summary) = load_indicators(&feeds(&loaded)).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(summary[0].origin, "builtin:threatfox-remcos.csv");
        let values: Vec<String> = (0..2).map(|i| set.get(i).value().to_string()).collect();
        assert_eq!(values, ["2.26.75.239:1971", "192.177.111.89:7788"]);
        let first = set.get(0);
        assert_eq!(
            (&*first.malware, &*first.threat_type),
            ("Remcos", "botnet_cc")
        );
        assert_eq!(first.confidence, Some(75));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse("[flow]\nidle_timeout = 5\n", Origin::Builtin).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("idle_timeout"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = parse(
            "[sensor]\nhome_networks = [\"10.0.0.0/33\"]\n",
            Origin::Builtin,
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("sensor.home_networks[0]")
        );
        let err = parse("[[output.syslog]]\nurl = \"http://x\"\n", Origin::Builtin);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("output.syslog[0].url")
        );
        let err = parse("[flow]\nmax_flows = 0\n", Origin::Builtin);
        assert!(err.unwrap_err().to_string().contains("flow.max_flows"));
    }

    #[test]
    fn relative_feed_paths_follow_the_config_file() {
        let loaded = parse("", Origin::File("/etc/c2watch/c2watch.toml".into())).unwrap();
        let resolved = feeds(&loaded);
        let expected = PathBuf::from("/etc/c2watch/threatfox-remcos.csv");
        assert_eq!(resolved[0].source, FeedSource::File(expected));
    }

    #[test]
    fn syslog_urls() {
        let u = SyslogUrl::parse("tcp://[::1]:6514").unwrap();
        assert_eq!(
            (u.transport, u.address.as_str()),
            (Transport::Tcp, "[::1]:6514")
        );
        assert!(SyslogUrl::parse("udp://host").is_err());
        assert!(SyslogUrl::parse("udp://:514").is_err());
        assert_eq!(Facility::Local4.code(), 20);
        assert_eq!(Facility::Ftp.code(), 11);
    }
}
