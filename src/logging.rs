//! The node's log: one line per record on stderr, each starting with an
//! RFC 3339 UTC timestamp, as text or as a JSON object (`--log-format`).
//!
//! Some crates are quieter than the node's own records: ureq's print from
//! warnings up, and the ZooKeeper client's never (it would print a line
//! per attempt to reconnect; the registry logs its state changes once
//! each, and learns nothing from the client's log).
//!
//! Timestamps are formatted here from `SystemTime` (civil date from the day
//! count since 1970), which is all a log line needs of a time library.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// How each line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-30T21:04:05.123Z INFO  [treecache::startup] joined the tree ...`
    Text,
    /// `{"ts":"2026-11-30T21:04:05.123Z","level":"INFO","target":"treecache::startup","msg":"joined the tree ..."}`
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_string()),
        }
    }
}

/// Crates whose records are quieter than the node's own, and the most
/// verbose level printed of each.
const QUIET_TARGETS: [(&str, log::LevelFilter); 2] = [
    ("ureq", log::LevelFilter::Warn),
    ("zookeeper", log::LevelFilter::Off),
];

/// The node's logger (see the module documentation).
struct NodeLogger {
    level: log::LevelFilter,
    format: LogFormat,
}

impl NodeLogger {
    fn level_for(&self, target: &str) -> log::LevelFilter {
        let quiet = QUIET_TARGETS.iter().find(|(t, _)| {
            target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::"))
        });
        match quiet {
            Some((_, most)) => self.level.min(*most),
            None => self.level,
        }
    }
}

impl log::Log for NodeLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level_for(metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() > self.level_for(record.target()) {
            return;
        }
        let line = format_line(
            self.format,
            SystemTime::now(),
            record.level(),
            record.target(),
            &record.args().to_string(),
        );
        // One write per line, so that lines of different threads never mix.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the node's logger; once per process.
pub fn init(level: log::LevelFilter, format: LogFormat) {
    let logger: &'static NodeLogger = Box::leak(Box::new(NodeLogger { level, format }));
    log::set_logger(logger).expect("the logger is set once");
    // The zookeeper crate (0.8.0, io.rs) logs each ping with
    // `trace!("Pinging {:?}", self.sock.peer_addr().unwrap())`, whose
    // argument is evaluated whenever trace is on and panics on a socket that
    // is not connected. The node writes no trace records of its own, so
    // records stop at debug: trace would only enable that panic. When a
    // release of the crate no longer unwraps there, this cap can go.
    log::set_max_level(level.min(log::LevelFilter::Debug));
}

/// One record as a line, newline included. A message's own line breaks are
/// written as `\n`, so that every line of the log starts with a timestamp.
pub fn format_line(
    format: LogFormat,
    at: SystemTime,
    level: log::Level,
    target: &str,
    message: &str,
) -> String {
    let ts = rfc3339_utc(at);
    match format {
        LogFormat::Text => {
            let message = message.replace('\r', "\\r").replace('\n', "\\n");
            format!("{ts} {level:<5} [{target}] {message}\n")
        }
        LogFormat::Json => {
            let text = |s: &str| serde_json::to_string(s).expect("a string serializes");
            format!(
                "{{\"ts\":\"{ts}\",\"level\":\"{level}\",\"target\":{},\"msg\":{}}}\n",
                text(target),
                text(message)
            )
        }
    }
}

/// `at` in UTC as RFC 3339 with milliseconds: `2026-11-30T21:04:05.123Z`.
/// Times before 1970 are written as 1970-01-01T00:00:00.000Z.
pub fn rfc3339_utc(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: years of 400
/// ("eras") have 146 097 days, and counting years from March puts the leap
/// day last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March is 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn timestamps_of_known_instants() {
        let cases = [
            (at(0, 0), "1970-01-01T00:00:00.000Z"),
            (at(951_782_400, 0), "2000-02-29T00:00:00.000Z"),
            (at(946_684_799, 999), "1999-12-31T23:59:59.999Z"),
            (at(1_709_251_199, 500), "2024-02-29T23:59:59.500Z"),
            (at(1_796_072_645, 123), "2026-11-30T21:04:05.123Z"),
            (at(4_107_585_600, 0), "2100-03-01T12:00:00.000Z"),
            (at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z"),
            (
                UNIX_EPOCH - Duration::from_secs(5),
                "1970-01-01T00:00:00.000Z",
            ),
        ];
        for (instant, text) in cases {
            assert_eq!(rfc3339_utc(instant), text);
        }
    }

    #[test]
    fn every_day_follows_the_one_before() {
        // 1970 to 2400: each day's date is the next after the previous one.
        let mut previous = civil_from_days(0);
        assert_eq!(previous, (1970, 1, 1));
        for days in 1..(430 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next = (y, m, d) == (py, pm, pd + 1)
                || (d == 1 && ((y, m) == (py, pm + 1) || (y, m, pm) == (py + 1, 1, 12)));
            assert!(next, "{previous:?} then {:?}", (y, m, d));
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            if m == 2 && d == 29 {
                assert!(leap, "{y}-02-29");
            }
            previous = (y, m, d);
        }
    }

    #[test]
    fn text_lines_start_with_the_timestamp() {
        let line = format_line(
            LogFormat::Text,
            at(1_796_072_645, 123),
            log::Level::Info,
            "treecache::startup",
            "joined\nthe tree",
        );
        assert_eq!(
            line,
            "2026-11-30T21:04:05.123Z INFO  [treecache::startup] joined\\nthe tree\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let line = format_line(
            LogFormat::Json,
            at(1_796_072_645, 123),
            log::Level::Warn,
            "treecache::registry",
            "say \"hi\"\nand go",
        );
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ts": "2026-11-30T21:04:05.123Z",
                "level": "WARN",
                "target": "treecache::registry",
                "msg": "say \"hi\"\nand go",
            })
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert!(LogFormat::parse("xml").is_err());
    }

    #[test]
    fn quiet_crates_log_warnings_only() {
        let logger = NodeLogger {
            level: log::LevelFilter::Debug,
            format: LogFormat::Text,
        };
        assert_eq!(logger.level_for("ureq::unit"), log::LevelFilter::Warn);
        assert_eq!(logger.level_for("ureq"), log::LevelFilter::Warn);
        assert_eq!(logger.level_for("ureqx"), log::LevelFilter::Debug);
        assert_eq!(
            logger.level_for("treecache::startup"),
            log::LevelFilter::Debug
        );
        let quiet = NodeLogger {
            level: log::LevelFilter::Error,
            format: LogFormat::Json,
        };
        assert_eq!(quiet.level_for("ureq"), log::LevelFilter::Error);
    }

    #[test]
    fn the_zookeeper_clients_records_never_print() {
        let logger = NodeLogger {
            level: log::LevelFilter::Trace,
            format: LogFormat::Text,
        };
        assert_eq!(logger.level_for("zookeeper::io"), log::LevelFilter::Off);
        assert_eq!(logger.level_for("zookeeper"), log::LevelFilter::Off);
        assert_eq!(
            logger.level_for("treecache::registry::client"),
            log::LevelFilter::Trace
        );
    }
}
