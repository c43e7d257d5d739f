//! Reading threat-intel feed files into [`Indicator`]s.
//!
//! c2watch loads three kinds of file: the ThreatFox CSV export, the ThreatFox JSON export,
//! and a plain list with one endpoint or address per line. This module tells them apart by
//! their content, parses them, and keeps the rows that name something the sensor can see on
//! the wire (`ip:port` and `ip`). Rows of other types (domains, URLs, hashes) are counted in
//! [`ParsedFeed::skipped_rows`] and left out. Parsing happens at start-up and on reload,
//! never per packet, so this module allocates freely and prefers precise errors to speed.
//!
//! Feed files come from outside and are not trusted. No input makes this module panic
//! (the property tests at the bottom feed it arbitrary text), and every refusal is a
//! [`FeedError`] naming the file, the line and, where one is to blame, the field. For the
//! JSON export the line is the one where the faulty entry ends, since that is where the
//! JSON reader stands when the entry is checked. Context text (malware, threat type,
//! reference) is kept exactly as the feed gave it; escaping it for output is the CEF
//! writer's job.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::indicator::Indicator;
use crate::timefmt;

/// Longest piece of feed text quoted in an error message, in characters.
const EXCERPT_CHARS: usize = 60;

/// Byte-order mark that some editors write at the start of UTF-8 files.
const BOM: char = '\u{feff}';

/// The feed file formats c2watch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedFormat {
    /// ThreatFox CSV export: `#` comments, a commented column header, quoted values.
    ThreatFoxCsv,
    /// ThreatFox JSON export: an object mapping each IOC id to an array of entries.
    ThreatFoxJson,
    /// One `ip:port`, `[ipv6]:port` or bare address per line, `#` comments.
    PlainList,
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FeedFormat::ThreatFoxCsv => "threatfox-csv",
            FeedFormat::ThreatFoxJson => "threatfox-json",
            FeedFormat::PlainList => "plain",
        })
    }
}

/// The indicators read from one feed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFeed {
    /// The format the file was recognised as.
    pub format: FeedFormat,
    /// The indicators, in file order.
    pub indicators: Vec<Indicator>,
    /// Rows left out because their `ioc_type` is neither `ip:port` nor `ip`.
    pub skipped_rows: u64,
}

impl ParsedFeed {
    /// A feed of `format` without indicators, to be filled by a parser.
    fn empty(format: FeedFormat) -> ParsedFeed {
        ParsedFeed {
            format,
            indicators: Vec::new(),
            skipped_rows: 0,
        }
    }
}

/// Why a feed file was refused, and where; shown as ``origin:line: field `name`: reason``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}{}: {reason}", LineLabel(*.line), FieldLabel(.field.as_deref()))]
pub struct FeedError {
    /// Path of the feed file, or a name such as `builtin:threatfox-remcos.csv`.
    pub origin: String,
    /// 1-based line number, when the fault has one.
    pub line: Option<usize>,
    /// Column (CSV) or `{ioc id}.{key}` (JSON) at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// Writes `:{line}` for a known line, nothing otherwise.
struct LineLabel(Option<usize>);

impl fmt::Display for LineLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// Writes ``: field `{name}` `` for a known field, nothing otherwise.
struct FieldLabel<'a>(Option<&'a str>);

impl fmt::Display for FieldLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(field) => write!(f, ": field `{field}`"),
            None => Ok(()),
        }
    }
}

/// Parses the feed file `text`, recognising its format with [`detect_format`].
///
/// `origin` names the file in errors only; `feed_name` is stored in every indicator's
/// [`Indicator::feed`]. A leading UTF-8 byte-order mark is ignored. A file without
/// indicators is valid and gives an empty list.
pub fn parse_feed(origin: &str, feed_name: &str, text: &str) -> Result<ParsedFeed, FeedError> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let source = Source { origin, feed_name };

    match detect_format(text) {
        FeedFormat::ThreatFoxCsv => parse_csv(&source, text),
        FeedFormat::ThreatFoxJson => parse_json(&source, text),
        FeedFormat::PlainList => parse_plain(&source, text),
    }
}

/// Recognises a feed's format from its content.
///
/// JSON if the first non-blank character is `{`; ThreatFox CSV if a `#` comment holding
/// `"ioc_value"` (the column header) comes before the first data line, or if that line
/// starts with `"`; a plain list otherwise.
pub fn detect_format(text: &str) -> FeedFormat {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    if text.trim_start().starts_with('{') {
        return FeedFormat::ThreatFoxJson;
    }

    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        match line.strip_prefix('#') {
            Some(comment) if comment.contains("\"ioc_value\"") => return FeedFormat::ThreatFoxCsv,
            Some(_) => {}
            None if line.starts_with('"') => return FeedFormat::ThreatFoxCsv,
            None => return FeedFormat::PlainList,
        }
    }
    FeedFormat::PlainList
}

// ---------------------------------------------------------------------------------------
// Shared by all formats: where errors come from, and turning one row into an indicator.
// ---------------------------------------------------------------------------------------

/// The file being parsed: its name for errors and its feed name for indicators.
struct Source<'a> {
    origin: &'a str,
    feed_name: &'a str,
}

impl Source<'_> {
    fn error(&self, line: Option<usize>, problem: Problem) -> FeedError {
        FeedError {
            origin: self.origin.to_owned(),
            line,
            field: problem.field,
            reason: problem.reason,
        }
    }
}

/// A fault inside one row, before the file and line are attached.
#[derive(Debug)]
struct Problem {
    field: Option<String>,
    reason: String,
}

impl Problem {
    /// A fault in the named column or key.
    fn in_field(field: &str, reason: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.to_owned()),
            reason: reason.into(),
        }
    }

    /// A fault in the row as a whole.
    fn in_row(reason: impl Into<String>) -> Problem {
        Problem {
            field: None,
            reason: reason.into(),
        }
    }
}

/// The ThreatFox IOC types the sensor can match on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IocKind {
    /// `ip:port`: an address and a port.
    Endpoint,
    /// `ip`: an address, any port.
    Address,
}

/// Classifies an `ioc_type`; `None` for types the sensor cannot match (domain, url, ...).
fn ioc_kind(ioc_type: &str) -> Result<Option<IocKind>, Problem> {
    match ioc_type.trim() {
        "" => Err(Problem::in_field("ioc_type", "is empty")),
        "ip:port" => Ok(Some(IocKind::Endpoint)),
        "ip" => Ok(Some(IocKind::Address)),
        _ => Ok(None),
    }
}

/// One matchable row's values as the feed gave them, empty where absent.
struct Row<'a> {
    ioc_value: &'a str,
    ioc_id: &'a str,
    first_seen: &'a str,
    threat_type: &'a str,
    malware: &'a str,
    reference: &'a str,
    confidence: Option<u8>,
}

/// Checks `row` as an indicator of `kind` and builds it.
fn build_indicator(kind: IocKind, row: &Row<'_>, feed_name: &str) -> Result<Indicator, Problem> {
    let value = row.ioc_value.trim();
    let (addr, port) = match kind {
        IocKind::Endpoint => parse_endpoint(value).map(|(addr, port)| (addr, Some(port))),
        IocKind::Address => parse_address(value).map(|addr| (addr, None)),
    }
    .map_err(|reason| Problem::in_field("ioc_value", reason))?;

    Ok(Indicator {
        addr,
        port,
        malware: row.malware.into(),
        threat_type: row.threat_type.into(),
        confidence: row.confidence,
        first_seen_ms: parse_first_seen(row.first_seen)?,
        feed_id: feed_id(row.ioc_id).into(),
        reference: row.reference.into(),
        feed: feed_name.into(),
    })
}

/// `threatfox:{id}`, or empty when the feed gives no id.
fn feed_id(ioc_id: &str) -> String {
    match ioc_id.trim() {
        "" => String::new(),
        id => format!("threatfox:{id}"),
    }
}

/// Reads `a.b.c.d:port` or `[ipv6]:port` with a port of 1-65535.
fn parse_endpoint(text: &str) -> Result<(IpAddr, u16), String> {
    match text.parse::<SocketAddr>() {
        Ok(SocketAddr::V6(v6)) if v6.scope_id() != 0 => Err(format!(
            "IPv6 zone indexes are not supported: `{}`",
            excerpt(text)
        )),
        Ok(addr) if addr.port() == 0 => Err(format!("port 0 is not valid: `{}`", excerpt(text))),
        Ok(addr) => Ok((addr.ip(), addr.port())),
        Err(_) => Err(endpoint_syntax_error(text)),
    }
}

/// Says what is wrong with text that is not an endpoint.
fn endpoint_syntax_error(text: &str) -> String {
    let shown = excerpt(text);
    if text.parse::<IpAddr>().is_ok() {
        return format!("`{shown}` has no port");
    }

    let host_is_valid = text
        .rsplit_once(':')
        .is_some_and(|(host, _)| is_endpoint_host(host));
    if host_is_valid {
        format!("port of `{shown}` is not a number 1-65535")
    } else {
        format!("`{shown}` is neither `a.b.c.d:port`, `[ipv6]:port` nor an IP address")
    }
}

/// Whether `host` is the address part of an endpoint: IPv4, or IPv6 in brackets.
fn is_endpoint_host(host: &str) -> bool {
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));

    host.parse::<Ipv4Addr>().is_ok() || bracketed.is_some_and(|h| h.parse::<Ipv6Addr>().is_ok())
}

/// Reads a bare IPv4 or IPv6 address.
fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| format!("`{}` is not an IP address", excerpt(text)))
}

/// Reads `confidence_level`: an integer 0-100, or nothing.
fn parse_confidence(text: &str) -> Result<Option<u8>, Problem> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }

    match text.parse::<u8>() {
        Ok(level) if level <= 100 => Ok(Some(level)),
        _ => Err(confidence_error(text)),
    }
}

fn confidence_error(shown: &str) -> Problem {
    let reason = format!("must be an integer 0-100, found `{}`", excerpt(shown));

    Problem::in_field("confidence_level", reason)
}

/// Reads `first_seen_utc` with [`timefmt::parse_utc`], or nothing.
fn parse_first_seen(text: &str) -> Result<Option<i64>, Problem> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }

    match timefmt::parse_utc(text) {
        Some(ms) => Ok(Some(ms)),
        None => Err(Problem::in_field(
            "first_seen_utc",
            format!(
                "`{}` is not a `YYYY-MM-DD HH:MM:SS` UTC time",
                excerpt(text)
            ),
        )),
    }
}

/// At most [`EXCERPT_CHARS`] characters of `text`, control characters escaped, so that a
/// hostile feed cannot flood or garble the terminal through an error message.
fn excerpt(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        shown.push_str("...");
    }
    shown
}

// ---------------------------------------------------------------------------------------
// ThreatFox CSV export.
// ---------------------------------------------------------------------------------------

/// Reads a ThreatFox CSV export line by line.
fn parse_csv(source: &Source<'_>, text: &str) -> Result<ParsedFeed, FeedError> {
    let mut reader = CsvReader {
        source,
        columns: None,
        open_record: None,
        feed: ParsedFeed::empty(FeedFormat::ThreatFoxCsv),
    };
    for (index, line) in text.lines().enumerate() {
        reader.read_line(index + 1, line)?;
    }

    reader.finish()
}

/// Positions of the columns this module reads, taken from the header line, since the
/// column set of the export has changed over time (older ones lack `is_compromised`).
#[derive(Debug)]
struct Columns {
    /// Line of the header, quoted when a row does not fit it.
    line: usize,
    /// Number of columns in the header; every row must have as many values.
    width: usize,
    ioc_value: usize,
    ioc_type: usize,
    first_seen: Option<usize>,
    ioc_id: Option<usize>,
    threat_type: Option<usize>,
    malware: Option<usize>,
    confidence: Option<usize>,
    reference: Option<usize>,
}

impl Columns {
    /// Finds the columns in the header's `names`; `ioc_value` and `ioc_type` are required.
    fn from_header(names: &[String], line: usize) -> Result<Columns, Problem> {
        let find = |name: &str| names.iter().position(|n| n.trim() == name);
        let require = |name: &str| {
            find(name).ok_or_else(|| Problem::in_field(name, "column is missing from the header"))
        };

        Ok(Columns {
            line,
            width: names.len(),
            ioc_value: require("ioc_value")?,
            ioc_type: require("ioc_type")?,
            first_seen: find("first_seen_utc"),
            ioc_id: find("ioc_id"),
            threat_type: find("threat_type"),
            malware: find("malware_printable"),
            confidence: find("confidence_level"),
            reference: find("reference"),
        })
    }
}

/// State of a CSV read: the header seen so far and a record still waiting for its end.
struct CsvReader<'s, 'a> {
    source: &'s Source<'a>,
    columns: Option<Columns>,
    /// A record whose quoted value goes on past its line, with the line it started on.
    open_record: Option<(usize, FieldSplitter)>,
    feed: ParsedFeed,
}

impl CsvReader<'_, '_> {
    /// Handles line `number`: a comment, the header, a blank, or (part of) a record.
    fn read_line(&mut self, number: usize, line: &str) -> Result<(), FeedError> {
        if let Some((start, splitter)) = self.open_record.take() {
            return self.continue_record(start, splitter, line);
        }

        let content = line.trim();
        if content.is_empty() {
            return Ok(());
        }

        match content.strip_prefix('#') {
            Some(comment) => self.read_comment(number, comment),
            None => self.continue_record(number, FieldSplitter::default(), line),
        }
    }

    /// Takes the column positions from a header comment; ignores any other comment.
    fn read_comment(&mut self, number: usize, comment: &str) -> Result<(), FeedError> {
        let content = comment.trim_start();
        if !is_csv_header(content) {
            return Ok(());
        }

        let names = FieldSplitter::split_line(content)
            .map_err(|reason| self.source.error(Some(number), Problem::in_row(reason)))?;
        let columns = Columns::from_header(&names, number)
            .map_err(|problem| self.source.error(Some(number), problem))?;
        self.columns = Some(columns);
        Ok(())
    }

    /// Feeds one more line to a record, and reads the record once it is complete.
    fn continue_record(
        &mut self,
        start: usize,
        mut splitter: FieldSplitter,
        line: &str,
    ) -> Result<(), FeedError> {
        splitter
            .feed(line)
            .map_err(|reason| self.source.error(Some(start), Problem::in_row(reason)))?;
        if splitter.is_open() {
            self.open_record = Some((start, splitter));
            return Ok(());
        }

        self.read_record(start, &splitter.finish())
    }

    /// Turns the values of the record starting on line `number` into an indicator.
    fn read_record(&mut self, number: usize, values: &[String]) -> Result<(), FeedError> {
        let Some(columns) = &self.columns else {
            let reason = "no `# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",...` header line \
                          before the first data row";
            return Err(self
                .source
                .error(Some(1), Problem::in_field("ioc_value", reason)));
        };
        if values.len() != columns.width {
            let reason = format!(
                "{} values, but the header on line {} names {} columns",
                values.len(),
                columns.line,
                columns.width
            );
            return Err(self.source.error(Some(number), Problem::in_row(reason)));
        }

        match csv_indicator(columns, values, self.source.feed_name) {
            Ok(Some(indicator)) => self.feed.indicators.push(indicator),
            Ok(None) => self.feed.skipped_rows += 1,
            Err(problem) => return Err(self.source.error(Some(number), problem)),
        }
        Ok(())
    }

    /// Ends the read; fails if a quoted value was never closed.
    fn finish(self) -> Result<ParsedFeed, FeedError> {
        match self.open_record {
            Some((start, _)) => Err(self.source.error(
                Some(start),
                Problem::in_row("a quoted value is not closed before the end of the file"),
            )),
            None => Ok(self.feed),
        }
    }
}

/// Whether a comment's text is the column header: it starts with `"` and names
/// `ioc_value` or `ioc_type`. Accepting either means a header that lacks one of the two
/// required columns is still taken as the header and refused with its own line number.
fn is_csv_header(comment: &str) -> bool {
    comment.starts_with('"') && (comment.contains("ioc_value") || comment.contains("ioc_type"))
}

/// Builds the indicator of one CSV record; `None` if its type is not matchable.
fn csv_indicator(
    columns: &Columns,
    values: &[String],
    feed_name: &str,
) -> Result<Option<Indicator>, Problem> {
    let cell = |column: Option<usize>| csv_cell(values, column);
    let Some(kind) = ioc_kind(cell(Some(columns.ioc_type)))? else {
        return Ok(None);
    };

    let row = Row {
        ioc_value: cell(Some(columns.ioc_value)),
        ioc_id: cell(columns.ioc_id),
        first_seen: cell(columns.first_seen),
        threat_type: cell(columns.threat_type),
        malware: cell(columns.malware),
        reference: cell(columns.reference),
        confidence: parse_confidence(cell(columns.confidence))?,
    };
    build_indicator(kind, &row, feed_name).map(Some)
}

/// The value in `column`; empty if the column is absent or the value is `None`.
fn csv_cell(values: &[String], column: Option<usize>) -> &str {
    let value = column
        .and_then(|i| values.get(i))
        .map_or("", String::as_str);

    if value == "None" { "" } else { value }
}

/// Where a [`FieldSplitter`] stands within a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum SplitState {
    /// Before a value; blanks are skipped.
    #[default]
    ValueStart,
    /// Inside a value without quotes.
    Bare,
    /// Inside a quoted value.
    Quoted,
    /// Just after a `"` in a quoted value: the first half of `""`, or the closing quote.
    QuoteSeen,
    /// After the closing quote; only blanks may come before the `,`.
    Closed,
}

/// Splits a CSV record into values, a line at a time, so that a quoted value may span
/// lines. Values are separated by `,` with any blanks around it; a quoted value may hold
/// commas, and `""` in it stands for one `"` (RFC 4180 section 2). ThreatFox quotes every
/// value; unquoted values are accepted too and lose their surrounding blanks.
#[derive(Debug, Default)]
struct FieldSplitter {
    values: Vec<String>,
    current: String,
    state: SplitState,
}

impl FieldSplitter {
    /// Splits a record that must fit on one line, such as the header.
    fn split_line(line: &str) -> Result<Vec<String>, &'static str> {
        let mut splitter = FieldSplitter::default();
        splitter.feed(line)?;
        if splitter.is_open() {
            return Err("a quoted value is not closed at the end of the line");
        }

        Ok(splitter.finish())
    }

    /// Splits one line of the record. Afterwards [`FieldSplitter::is_open`] tells whether
    /// a quoted value continues on the next line.
    fn feed(&mut self, line: &str) -> Result<(), &'static str> {
        for c in line.chars() {
            self.step(c)?;
        }
        match self.state {
            SplitState::Quoted => self.current.push('\n'),
            _ => self.end_value(),
        }
        Ok(())
    }

    /// Advances the state machine by one character.
    fn step(&mut self, c: char) -> Result<(), &'static str> {
        use SplitState::{Bare, Closed, QuoteSeen, Quoted, ValueStart};

        self.state = match (self.state, c) {
            (ValueStart | QuoteSeen | Closed, ' ' | '\t' | '\r') => self.state.after_blank(),
            (ValueStart, '"') => Quoted,
            (ValueStart | Bare | QuoteSeen | Closed, ',') => {
                self.end_value();
                ValueStart
            }
            (Quoted, '"') => QuoteSeen,
            (QuoteSeen, '"') | (Quoted, _) => {
                self.current.push(c);
                Quoted
            }
            (Bare, '"') => return Err("a `\"` inside a value that does not start with one"),
            (QuoteSeen | Closed, _) => return Err("text after a closing `\"`; expected `,`"),
            (ValueStart | Bare, _) => {
                self.current.push(c);
                Bare
            }
        };
        Ok(())
    }

    /// Stores the value read so far and starts the next.
    fn end_value(&mut self) {
        if self.state == SplitState::Bare {
            let len = self.current.trim_end().len();
            self.current.truncate(len);
        }
        self.values.push(std::mem::take(&mut self.current));
    }

    /// Whether the record is inside a quoted value that has not been closed yet.
    fn is_open(&self) -> bool {
        self.state == SplitState::Quoted
    }

    /// The values of the record.
    fn finish(self) -> Vec<String> {
        self.values
    }
}

impl SplitState {
    /// The state after a blank outside a quoted value.
    fn after_blank(self) -> SplitState {
        match self {
            SplitState::ValueStart => SplitState::ValueStart,
            _ => SplitState::Closed,
        }
    }
}

// ---------------------------------------------------------------------------------------
// ThreatFox JSON export.
// ---------------------------------------------------------------------------------------

/// Reads a ThreatFox JSON export, checking each entry as soon as serde_json has read it.
fn parse_json(source: &Source<'_>, text: &str) -> Result<ParsedFeed, FeedError> {
    let mut collector = JsonCollector {
        feed_name: source.feed_name,
        feed: ParsedFeed::empty(FeedFormat::ThreatFoxJson),
        problem: None,
        failed_id: None,
    };
    let mut reader = serde_json::Deserializer::from_str(text);
    let walked = JsonRoot(&mut collector)
        .deserialize(&mut reader)
        .and_then(|()| reader.end());

    match walked {
        Ok(()) => Ok(collector.feed),
        Err(error) => Err(json_error(source, collector, &error)),
    }
}

/// Turns a failed read into a [`FeedError`] at serde_json's line.
fn json_error(
    source: &Source<'_>,
    collector: JsonCollector<'_>,
    error: &serde_json::Error,
) -> FeedError {
    let line = (error.line() > 0).then_some(error.line());
    let problem = collector.problem.unwrap_or_else(|| Problem {
        field: collector.failed_id,
        reason: describe_json_error(error),
    });

    source.error(line, problem)
}

/// serde_json's message without the position it appends (the line is reported apart).
fn describe_json_error(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);

    format!("invalid JSON: {message} (column {})", error.column())
}

/// The keys of a ThreatFox JSON entry that this module reads; others are ignored.
/// A missing key and `null` both read as `None`.
#[derive(Debug, Deserialize)]
struct JsonEntry {
    ioc_value: Option<Value>,
    ioc_type: Option<Value>,
    threat_type: Option<Value>,
    malware_printable: Option<Value>,
    first_seen_utc: Option<Value>,
    confidence_level: Option<Value>,
    reference: Option<Value>,
}

/// What a JSON read has gathered, and why it stopped if it did.
struct JsonCollector<'a> {
    feed_name: &'a str,
    feed: ParsedFeed,
    /// The fault of the entry that stopped the read.
    problem: Option<Problem>,
    /// The IOC id whose entries serde_json could not read.
    failed_id: Option<String>,
}

impl JsonCollector<'_> {
    /// Adds the indicator of `entry`, or keeps its fault and returns a short note to
    /// abort the read with.
    fn accept(&mut self, id: &str, entry: &JsonEntry) -> Result<(), &'static str> {
        match json_indicator(id, entry, self.feed_name) {
            Ok(Some(indicator)) => self.feed.indicators.push(indicator),
            Ok(None) => self.feed.skipped_rows += 1,
            Err(mut problem) => {
                problem.field = problem.field.map(|field| format!("{id}.{field}"));
                self.problem = Some(problem);
                return Err("invalid ThreatFox entry");
            }
        }
        Ok(())
    }
}

/// Visits the top-level object, which maps IOC ids to arrays of entries.
struct JsonRoot<'c, 'a>(&'c mut JsonCollector<'a>);

impl<'de> DeserializeSeed<'de> for JsonRoot<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonRoot<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object keyed by ThreatFox IOC id")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(id) = map.next_key::<String>()? {
            let entries = JsonEntries {
                collector: &mut *self.0,
                id: &id,
            };
            if let Err(error) = map.next_value_seed(entries) {
                self.0.failed_id = Some(id);
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Visits the array of entries of one IOC id.
struct JsonEntries<'c, 'a> {
    collector: &'c mut JsonCollector<'a>,
    id: &'c str,
}

impl<'de> DeserializeSeed<'de> for JsonEntries<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for JsonEntries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of ThreatFox entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let entry = JsonEntrySeed {
                collector: &mut *self.collector,
                id: self.id,
            };
            if seq.next_element_seed(entry)?.is_none() {
                return Ok(());
            }
        }
    }
}

/// Visits one entry and checks it before serde_json leaves the entry's object, so that
/// serde_json stamps a rejection with the line of the entry's closing `}`.
struct JsonEntrySeed<'c, 'a> {
    collector: &'c mut JsonCollector<'a>,
    id: &'c str,
}

impl<'de> DeserializeSeed<'de> for JsonEntrySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonEntrySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ThreatFox entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let entry = JsonEntry::deserialize(MapAccessDeserializer::new(map))?;

        self.collector
            .accept(self.id, &entry)
            .map_err(de::Error::custom)
    }
}

/// Builds the indicator of one JSON entry; `None` if its type is not matchable.
fn json_indicator(
    id: &str,
    entry: &JsonEntry,
    feed_name: &str,
) -> Result<Option<Indicator>, Problem> {
    let Some(kind) = ioc_kind(json_text(&entry.ioc_type, "ioc_type")?)? else {
        return Ok(None);
    };

    let row = Row {
        ioc_value: json_text(&entry.ioc_value, "ioc_value")?,
        ioc_id: id,
        first_seen: json_text(&entry.first_seen_utc, "first_seen_utc")?,
        threat_type: json_text(&entry.threat_type, "threat_type")?,
        malware: json_text(&entry.malware_printable, "malware_printable")?,
        reference: json_text(&entry.reference, "reference")?,
        confidence: json_confidence(&entry.confidence_level)?,
    };
    build_indicator(kind, &row, feed_name).map(Some)
}

/// A string value, empty for a missing key or `null`.
fn json_text<'v>(value: &'v Option<Value>, key: &str) -> Result<&'v str, Problem> {
    match value {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(Problem::in_field(
            key,
            format!("expected a string or null, found {}", json_kind(other)),
        )),
    }
}

/// `confidence_level` as a number or a numeric string, 0-100.
fn json_confidence(value: &Option<Value>) -> Result<Option<u8>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_confidence(text),
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|level| *level <= 100)
            .map(Some)
            .ok_or_else(|| confidence_error(&number.to_string())),
        Some(other) => Err(Problem::in_field(
            "confidence_level",
            format!("expected a number, found {}", json_kind(other)),
        )),
    }
}

/// Names the kind of a JSON value for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------
// Plain list.
// ---------------------------------------------------------------------------------------

/// Reads a plain list: one endpoint or address per line, `#` starting a comment.
fn parse_plain(source: &Source<'_>, text: &str) -> Result<ParsedFeed, FeedError> {
    let mut feed = ParsedFeed::empty(FeedFormat::PlainList);
    for (index, line) in text.lines().enumerate() {
        let content = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if content.is_empty() {
            continue;
        }

        let (addr, port) = parse_plain_value(content)
            .map_err(|reason| source.error(Some(index + 1), Problem::in_row(reason)))?;
        feed.indicators
            .push(Indicator::bare(addr, port, source.feed_name));
    }

    Ok(feed)
}

/// Reads a bare address (any port) or an endpoint.
fn parse_plain_value(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    match text.parse::<IpAddr>() {
        Ok(addr) => Ok((addr, None)),
        Err(_) => parse_endpoint(text).map(|(addr, port)| (addr, Some(port))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The CSV export as ThreatFox writes it, with one `ip:port` row on line 10.
    const REAL_CSV: &str = r#"################################################################
# ThreatFox IOCs: CSV export                                   #
# Last updated: 2026-06-07 10:00:00 UTC                        #
#                                                              #
# Terms Of Use: https://threatfox.abuse.ch/faq/#tos            #
# For questions please contact threatfox [at] abuse.ch         #
################################################################
#
# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias","malware_printable","last_seen_utc","confidence_level","is_compromised","reference","tags","anonymous","reporter"
"2026-06-06 08:12:01", "1500001", "2.26.75.239:1971", "ip:port", "botnet_cc", "win.remcos", "RemcosRAT", "Remcos", "None", "75", "0", "None", "Remcos", "0", "abuse_ch"
#
# Number of entries: 1
"#;

    /// A JSON export with one `ip:port` entry (ending on line 15) and one domain entry.
    const REAL_JSON: &str = r#"{
    "1500001": [
        {
            "ioc_value": "2.26.75.239:1971",
            "ioc_type": "ip:port",
            "threat_type": "botnet_cc",
            "malware": "win.remcos",
            "malware_alias": "RemcosRAT",
            "malware_printable": "Remcos",
            "first_seen_utc": "2026-06-06 08:12:01",
            "last_seen_utc": null,
            "confidence_level": 75,
            "reference": null,
            "tags": ["Remcos", "RAT"],
            "anonymous": "0",
            "reporter": "abuse_ch"
        }
    ],
    "1500002": [
        {
            "ioc_value": "evil.example",
            "ioc_type": "domain",
            "threat_type": "botnet_cc",
            "malware_printable": "Remcos",
            "confidence_level": 50
        }
    ]
}
"#;

    const PLAIN: &str =
        "# C2 endpoints\n1.2.3.4:80\n\n  [2001:db8::1]:443  # v6\n5.6.7.8\n2001:db8::2\n";

    /// A short CSV header naming `columns`, followed by `rows`.
    fn csv(columns: &str, rows: &[&str]) -> String {
        let mut text = format!("# {columns}\n");
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text
    }

    fn parse(text: &str) -> Result<ParsedFeed, FeedError> {
        parse_feed("feeds/test", "tf", text)
    }

    fn endpoint(text: &str) -> (IpAddr, Option<u16>) {
        let addr: SocketAddr = text.parse().unwrap();
        (addr.ip(), Some(addr.port()))
    }

    fn addr_port(indicator: &Indicator) -> (IpAddr, Option<u16>) {
        (indicator.addr, indicator.port)
    }

    #[test]
    fn real_csv_export_fills_every_context_field() {
        let feed = parse(REAL_CSV).unwrap();

        assert_eq!(feed.format, FeedFormat::ThreatFoxCsv);
        assert_eq!(feed.skipped_rows, 0);
        let expected = Indicator {
            malware: "Remcos".into(),
            threat_type: "botnet_cc".into(),
            confidence: Some(75),
            first_seen_ms: Some(1_780_733_521_000),
            feed_id: "threatfox:1500001".into(),
            reference: "".into(),
            ..Indicator::bare("2.26.75.239".parse().unwrap(), Some(1971), "tf")
        };
        assert_eq!(feed.indicators, vec![expected]);
    }

    #[test]
    fn csv_columns_come_from_the_header_not_a_fixed_order() {
        let text = csv(
            r#""ioc_type","malware_printable","ioc_value""#,
            &[r#""ip:port","Cobalt Strike","10.0.0.1:8443""#],
        );
        let feed = parse(&text).unwrap();

        let indicator = &feed.indicators[0];
        assert_eq!(addr_port(indicator), endpoint("10.0.0.1:8443"));
        assert_eq!(&*indicator.malware, "Cobalt Strike");
        assert_eq!(&*indicator.threat_type, "");
        assert_eq!(
            (indicator.confidence, indicator.first_seen_ms),
            (None, None)
        );
        assert_eq!(&*indicator.feed_id, "");
    }

    #[test]
    fn csv_none_means_empty() {
        let text = csv(
            concat!(
                r#""first_seen_utc","ioc_id","ioc_value","ioc_type","#,
                r#""threat_type","confidence_level","reference""#,
            ),
            &[r#""None", "None", "1.1.1.1:53", "ip:port", "None", "None", "None""#],
        );
        let indicator = &parse(&text).unwrap().indicators[0];

        assert_eq!(
            indicator,
            &Indicator::bare("1.1.1.1".parse().unwrap(), Some(53), "tf")
        );
    }

    #[test]
    fn csv_keeps_doubled_quotes_and_separators_inside_values() {
        let text = csv(
            r#""ioc_value","ioc_type","malware_printable","reference""#,
            &[r#""1.1.1.1:53", "ip:port", "Say ""hi"", | = \", "https://x.example/a?b=1"", ""c""#],
        );
        let indicator = &parse(&text).unwrap().indicators[0];

        assert_eq!(&*indicator.malware, r#"Say "hi", | = \"#);
        assert_eq!(&*indicator.reference, r#"https://x.example/a?b=1", "c"#);
    }

    #[test]
    fn csv_accepts_every_separator_spacing() {
        let text = csv(
            r#""ioc_value","ioc_type","threat_type""#,
            &[
                r#""1.1.1.1:1","ip:port","a""#,
                r#""1.1.1.1:2", "ip:port", "b""#,
                "\"1.1.1.1:3\"  ,\t \"ip:port\" ,\"c\"  ",
            ],
        );
        let feed = parse(&text).unwrap();

        let types: Vec<&str> = feed.indicators.iter().map(|i| &*i.threat_type).collect();
        assert_eq!(types, ["a", "b", "c"]);
    }

    #[test]
    fn csv_quoted_value_may_span_lines() {
        let text = csv(
            r#""ioc_value","ioc_type","reference""#,
            &[r#""1.1.1.1:53","ip:port","line one"#, r#"line two""#],
        );
        let indicator = &parse(&text).unwrap().indicators[0];

        assert_eq!(&*indicator.reference, "line one\nline two");
    }

    #[test]
    fn csv_skips_and_counts_unmatchable_types() {
        let text = csv(
            r#""ioc_value","ioc_type""#,
            &[
                r#""evil.example","domain""#,
                r#""1.1.1.1:53","ip:port""#,
                r#""http://evil.example/x","url""#,
                r#""9.9.9.9","ip""#,
            ],
        );
        let feed = parse(&text).unwrap();

        assert_eq!(feed.skipped_rows, 2);
        let values: Vec<_> = feed.indicators.iter().map(addr_port).collect();
        assert_eq!(
            values,
            [endpoint("1.1.1.1:53"), ("9.9.9.9".parse().unwrap(), None)]
        );
    }

    #[test]
    fn csv_tolerates_crlf_and_bom() {
        let text = format!("\u{feff}{}", REAL_CSV.replace('\n', "\r\n"));
        let feed = parse(&text).unwrap();

        assert_eq!(feed, parse(REAL_CSV).unwrap());
    }

    #[test]
    fn csv_bad_port_names_line_and_field() {
        let text = REAL_CSV.replace("2.26.75.239:1971", "2.26.75.239:99999");
        let error = parse(&text).unwrap_err();

        assert_eq!(error.line, Some(10));
        assert_eq!(error.field.as_deref(), Some("ioc_value"));
        assert_eq!(
            error.to_string(),
            "feeds/test:10: field `ioc_value`: port of `2.26.75.239:99999` is not a number 1-65535"
        );
    }

    #[test]
    fn csv_endpoint_without_port_is_refused() {
        let text = REAL_CSV.replace("2.26.75.239:1971", "2.26.75.239");
        let error = parse(&text).unwrap_err();

        assert_eq!(
            (error.line, error.field.as_deref()),
            (Some(10), Some("ioc_value"))
        );
        assert!(error.reason.contains("has no port"), "{error}");
    }

    #[test]
    fn csv_port_zero_and_unbracketed_v6_are_refused() {
        for value in [
            "2.26.75.239:0",
            "2001:db8::1:443",
            "[2001:db8::1]",
            "evil.example:80",
        ] {
            let text = REAL_CSV.replace("2.26.75.239:1971", value);
            let error = parse(&text).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("ioc_value"), "{value}");
        }
    }

    #[test]
    fn csv_missing_ioc_value_column_names_header_line() {
        let text = format!(
            "# comment\n{}",
            csv(r#""ioc_id","ioc_type""#, &[r#""1","ip:port""#])
        );
        let error = parse(&text).unwrap_err();

        assert_eq!(
            (error.line, error.field.as_deref()),
            (Some(2), Some("ioc_value"))
        );
        assert!(error.reason.contains("missing"), "{error}");
    }

    #[test]
    fn csv_missing_ioc_type_column_names_header_line() {
        let text = csv(r#""ioc_id","ioc_value""#, &[r#""1","1.1.1.1:53""#]);
        let error = parse(&text).unwrap_err();

        assert_eq!(
            (error.line, error.field.as_deref()),
            (Some(1), Some("ioc_type"))
        );
    }

    #[test]
    fn csv_without_header_reports_line_1() {
        let error = parse("\n\n\"1.1.1.1:53\",\"ip:port\"\n").unwrap_err();

        assert_eq!(
            (error.line, error.field.as_deref()),
            (Some(1), Some("ioc_value"))
        );
    }

    #[test]
    fn csv_row_with_wrong_value_count_names_its_line() {
        let text = csv(
            r#""ioc_value","ioc_type""#,
            &[r#""1.1.1.1:53","ip:port","extra""#],
        );
        let error = parse(&text).unwrap_err();

        assert_eq!((error.line, error.field.as_deref()), (Some(2), None));
        assert_eq!(
            error.reason,
            "3 values, but the header on line 1 names 2 columns"
        );
    }

    #[test]
    fn csv_bad_confidence_and_first_seen_name_their_field() {
        let cases = [
            ("\"75\"", "\"101\"", "confidence_level"),
            ("\"2026-06-06 08:12:01\"", "\"yesterday\"", "first_seen_utc"),
        ];
        for (good, bad, field) in cases {
            let error = parse(&REAL_CSV.replacen(good, bad, 1)).unwrap_err();
            assert_eq!(
                (error.line, error.field.as_deref()),
                (Some(10), Some(field))
            );
        }
    }

    #[test]
    fn csv_broken_quoting_is_refused_with_its_line() {
        let header = r#""ioc_value","ioc_type""#;
        for (row, line) in [
            (r#""1.1.1.1:53"x,"ip:port""#, 2),
            (r#""1.1.1.1:53","ip:port"#, 2),
        ] {
            let error = parse(&csv(header, &[row, "# trailer"])).unwrap_err();
            assert_eq!(error.line, Some(line), "{row}");
        }
    }

    #[test]
    fn csv_header_with_open_quote_is_refused() {
        let error =
            parse("#\n# \"ioc_value\",\"ioc_type\n\"1.1.1.1:53\",\"ip:port\"\n").unwrap_err();

        assert_eq!((error.line, error.field.as_deref()), (Some(2), None));
    }

    #[test]
    fn json_names_the_line_of_the_faulty_entry_not_its_array() {
        let text = r#"{"9": [
            {"ioc_value": "1.1.1.1:53", "ioc_type": "ip:port"},
            {"ioc_value": "1.1.1.1", "ioc_type": "ip:port"},
            {"ioc_value": "1.1.1.2:53", "ioc_type": "ip:port"}
        ]}"#;
        let error = parse(text).unwrap_err();

        assert_eq!(
            (error.line, error.field.as_deref()),
            (Some(3), Some("9.ioc_value"))
        );
    }

    #[test]
    fn csv_with_header_and_no_rows_is_empty() {
        let feed = parse(&csv(r#""ioc_value","ioc_type""#, &[])).unwrap();

        assert_eq!(feed, ParsedFeed::empty(FeedFormat::ThreatFoxCsv));
    }

    #[test]
    fn json_export_fills_context_and_skips_domains() {
        let feed = parse(REAL_JSON).unwrap();

        assert_eq!(feed.format, FeedFormat::ThreatFoxJson);
        assert_eq!(feed.skipped_rows, 1);
        assert_eq!(feed.indicators, parse(REAL_CSV).unwrap().indicators);
    }

    #[test]
    fn json_confidence_may_be_a_numeric_string() {
        let text = REAL_JSON.replace("\"confidence_level\": 75", "\"confidence_level\": \"80\"");
        let feed = parse(&text).unwrap();

        assert_eq!(feed.indicators[0].confidence, Some(80));
    }

    #[test]
    fn json_null_and_missing_keys_are_empty() {
        let text = r#"{"7": [{
            "ioc_value": "[2001:db8::1]:443", "ioc_type": "ip:port", "reference": null,
            "tags": null, "malware_printable": null, "confidence_level": null
        }]}"#;
        let indicator = &parse(text).unwrap().indicators[0];

        let expected = Indicator {
            feed_id: "threatfox:7".into(),
            ..Indicator::bare("2001:db8::1".parse().unwrap(), Some(443), "tf")
        };
        assert_eq!(indicator, &expected);
    }

    #[test]
    fn json_bad_entry_names_id_key_and_line() {
        let text = REAL_JSON.replace("2.26.75.239:1971", "2.26.75.239:0");
        let error = parse(&text).unwrap_err();

        assert_eq!(error.field.as_deref(), Some("1500001.ioc_value"));
        assert_eq!(
            error.line,
            Some(17),
            "the line of the entry's closing brace"
        );
    }

    #[test]
    fn json_wrong_types_name_their_key() {
        let cases = [
            (
                "\"confidence_level\": 75",
                "\"confidence_level\": 7.5",
                "1500001.confidence_level",
            ),
            (
                "\"confidence_level\": 75",
                "\"confidence_level\": \"x\"",
                "1500001.confidence_level",
            ),
            (
                "\"threat_type\": \"botnet_cc\"",
                "\"threat_type\": 1",
                "1500001.threat_type",
            ),
        ];
        for (good, bad, field) in cases {
            let error = parse(&REAL_JSON.replacen(good, bad, 1)).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{bad}");
        }
    }

    #[test]
    fn json_syntax_error_reports_serde_line() {
        let text = REAL_JSON.replace("\"ioc_type\": \"ip:port\",", "\"ioc_type\": \"ip:port\"");
        let error = parse(&text).unwrap_err();

        assert_eq!(error.line, Some(6));
        assert_eq!(error.field.as_deref(), Some("1500001"));
        assert!(error.reason.starts_with("invalid JSON: "), "{error}");
    }

    #[test]
    fn json_value_that_is_not_an_array_names_its_key() {
        let error = parse("{\n\"query_status\": \"no_result\"\n}").unwrap_err();

        assert_eq!(
            (error.line, error.field.as_deref()),
            (Some(2), Some("query_status"))
        );
    }

    #[test]
    fn json_empty_object_is_an_empty_feed() {
        assert_eq!(
            parse(" {}\n").unwrap(),
            ParsedFeed::empty(FeedFormat::ThreatFoxJson)
        );
    }

    #[test]
    fn plain_list_reads_endpoints_and_addresses() {
        let feed = parse(PLAIN).unwrap();

        assert_eq!(feed.format, FeedFormat::PlainList);
        let values: Vec<_> = feed.indicators.iter().map(addr_port).collect();
        let expected = [
            endpoint("1.2.3.4:80"),
            endpoint("[2001:db8::1]:443"),
            ("5.6.7.8".parse().unwrap(), None),
            ("2001:db8::2".parse().unwrap(), None),
        ];
        assert_eq!(values, expected);
        assert!(
            feed.indicators
                .iter()
                .all(|i| *i == Indicator::bare(i.addr, i.port, "tf"))
        );
    }

    #[test]
    fn plain_bad_line_names_its_number_and_text() {
        let long = "x".repeat(100);
        let error = parse(&format!("1.2.3.4:80\n# ok\n{long}\n")).unwrap_err();

        assert_eq!((error.line, error.field.as_deref()), (Some(3), None));
        let message = error.to_string();
        assert!(message.starts_with("feeds/test:3: `xxxx"), "{message}");
        assert!(
            message.contains(&format!("{}...`", "x".repeat(60))),
            "{message}"
        );
        assert!(!message.contains(&"x".repeat(61)), "{message}");
    }

    #[test]
    fn plain_port_zero_is_refused() {
        let error = parse("1.2.3.4:0\n").unwrap_err();

        assert_eq!(error.line, Some(1));
        assert!(error.reason.contains("port 0"), "{error}");
    }

    #[test]
    fn empty_text_is_an_empty_plain_feed() {
        for text in ["", "\n \n", "# nothing yet\n", "\u{feff}"] {
            assert_eq!(
                parse(text).unwrap(),
                ParsedFeed::empty(FeedFormat::PlainList)
            );
        }
    }

    #[test]
    fn detect_format_looks_at_content() {
        assert_eq!(detect_format(REAL_CSV), FeedFormat::ThreatFoxCsv);
        assert_eq!(
            detect_format("\"1.1.1.1:53\",\"ip:port\""),
            FeedFormat::ThreatFoxCsv
        );
        assert_eq!(
            detect_format("\u{feff}\n  {\"1\": []}"),
            FeedFormat::ThreatFoxJson
        );
        assert_eq!(detect_format(PLAIN), FeedFormat::PlainList);
    }

    #[test]
    fn feed_format_display_names() {
        let names = [
            FeedFormat::ThreatFoxCsv,
            FeedFormat::ThreatFoxJson,
            FeedFormat::PlainList,
        ]
        .map(|format| format.to_string());

        assert_eq!(names, ["threatfox-csv", "threatfox-json", "plain"]);
    }

    #[test]
    fn feed_error_display_leaves_out_missing_parts() {
        let error = |line, field: Option<&str>| FeedError {
            origin: "f.csv".into(),
            line,
            field: field.map(str::to_owned),
            reason: "bad".into(),
        };

        assert_eq!(
            error(Some(3), Some("x")).to_string(),
            "f.csv:3: field `x`: bad"
        );
        assert_eq!(error(Some(3), None).to_string(), "f.csv:3: bad");
        assert_eq!(error(None, Some("x")).to_string(), "f.csv: field `x`: bad");
        assert_eq!(error(None, None).to_string(), "f.csv: bad");
    }

    /// `insert` placed at byte `at` (clamped to a char boundary) of `base`.
    fn splice(base: &str, at: usize, insert: &str) -> String {
        let mut at = at.min(base.len());
        while !base.is_char_boundary(at) {
            at -= 1;
        }
        format!("{}{insert}{}", &base[..at], &base[at..])
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn feed_alphabet_never_panics(text in r#"[#"{}\[\]:,. \r\n\\0-9a-fnul_pio]{0,200}"#) {
            let _ = parse(&text);
            let _ = parse(&format!("# \"ioc_value\",\"ioc_type\"\n{text}"));
        }

        #[test]
        fn splices_into_valid_feeds_never_panic(
            base in prop::sample::select(vec![REAL_CSV, REAL_JSON, PLAIN]),
            at in any::<usize>(),
            insert in any::<String>(),
        ) {
            let _ = parse(&splice(base, at % (base.len() + 1), &insert));
        }

        #[test]
        fn splices_of_feed_syntax_never_panic(
            base in prop::sample::select(vec![REAL_CSV, REAL_JSON, PLAIN]),
            at in any::<usize>(),
            insert in r#"[#"{}\[\]:,. \n0-9]{1,8}"#,
        ) {
            let _ = parse(&splice(base, at % (base.len() + 1), &insert));
        }

        #[test]
        fn plain_endpoints_round_trip(addr in any::<SocketAddr>()) {
            prop_assume!(addr.port() != 0);
            let addr = SocketAddr::new(addr.ip(), addr.port());
            let feed = parse(&format!("{addr}\n")).unwrap();
            prop_assert_eq!(feed.indicators[0].value().to_string(), addr.to_string());
        }
    }
}
