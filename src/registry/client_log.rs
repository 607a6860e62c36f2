//! The hook that reads the `zookeeper` crate's log records: the process's
//! logger hands them to [`pace_client_log`] instead of printing them.

use std::time::Duration;

use super::sessions;

/// Pause per failed connection attempt of the client's own reconnect loop.
const CLIENT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The most verbose level the process must let through for the crate's
/// records to reach [`pace_client_log`]: the record of a new connection is
/// a trace record. (`launch` sets the global maximum to at least this.)
pub const CLIENT_LOG_LEVEL: log::LevelFilter = log::LevelFilter::Trace;

/// Whether a log record comes from the `zookeeper` crate.
pub fn is_client_log(target: &str) -> bool {
    target == "zookeeper" || target.starts_with("zookeeper::")
}

/// Handles a log record of the `zookeeper` crate instead of printing it.
/// The process's logger must hand every record of the crate here (down to
/// [`CLIENT_LOG_LEVEL`]): without them a registry cannot learn its sessions
/// and refuses to use them.
///
/// While the server is down, the client's I/O thread retries connecting
/// with no pause: either an immediate "Failed to connect" and round again,
/// or a connect that is refused a moment later ("Reconnect due to HUP"),
/// which starts over with "Establishing Zk connection". The only code of
/// ours it runs on each attempt is these log calls. Sleeping in them turns a
/// loop that would burn a core for a whole session timeout into about ten
/// attempts a second.
///
/// The same thread logs each new connection's session id and granted
/// timeout, and a session's expiry; those are noted for the registry that
/// owns the thread (see `sessions`). Trace records are many: each costs a
/// target comparison, and those of the I/O thread the first few bytes of
/// their text.
pub fn pace_client_log(record: &log::Record<'_>) {
    if record.target() != "zookeeper::io" {
        return;
    }
    if record.level() == log::Level::Trace {
        sessions::note_trace(record.args());
        return;
    }
    if record.level() > log::Level::Info {
        return;
    }
    let message = record.args().to_string();
    if message.starts_with("Failed to connect") || message.starts_with("Establishing Zk connection")
    {
        std::thread::sleep(CLIENT_RETRY_PAUSE);
    } else {
        sessions::note_info(&message);
    }
}
