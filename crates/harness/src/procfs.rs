//! What a process holds, from /proc: threads, open descriptors, resident
//! memory, and the sockets it listens on.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A process's threads, open descriptors and resident memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub threads: u64,
    pub fds: u64,
    pub rss_kib: u64,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} threads, {} fds, {} KiB resident",
            self.threads, self.fds, self.rss_kib
        )
    }
}

/// The usage of process `pid` now.
pub fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Usage {
        threads: field("Threads:"),
        fds,
        rss_kib: field("VmRSS:"),
    }
}

/// Waits up to `limit` until `ok` holds of the usage of `pid`; the last
/// usage seen, and whether it held.
pub fn wait_for_usage(pid: u32, limit: Duration, ok: impl Fn(&Usage) -> bool) -> (Usage, bool) {
    let until = Instant::now() + limit;
    loop {
        let now = usage(pid);
        if ok(&now) {
            return (now, true);
        }
        if Instant::now() >= until {
            return (now, false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The process exists and is neither a zombie nor dead.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which ends with ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    !matches!(state, "Z" | "X" | "x")
}

/// The inodes of the sockets process `pid` has open.
pub fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            out.insert(inode);
        }
    }
    out
}

/// A TCP socket in the LISTEN state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpListening {
    /// The local address as /proc shows it (hexadecimal).
    pub local: String,
    pub port: u16,
    pub inode: u64,
}

/// The listening TCP sockets (IPv4 and IPv6) of process `pid`.
pub fn listening_tcp(pid: u32) -> Vec<TcpListening> {
    let mine = socket_inodes(pid);
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let inode: u64 = f[9].parse().unwrap_or(0);
            if !mine.contains(&inode) {
                continue;
            }
            let (local, port) = f[1].rsplit_once(':').unwrap_or((f[1], "0"));
            out.push(TcpListening {
                local: local.to_string(),
                port: u16::from_str_radix(port, 16).unwrap_or(0),
                inode,
            });
        }
    }
    out
}

/// How many TCP connections (IPv4 and IPv6) are established with `port` as
/// their local port: the connections a server on that port holds open.
pub fn established_at(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if f.len() > 3 && f[3] == "01" && local_port == Some(port) {
                n += 1;
            }
        }
    }
    n
}

/// A Unix socket, from /proc/net/unix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixSocket {
    pub inode: u64,
    /// It accepts connections.
    pub listening: bool,
    /// Its address: a path, `@name` for an abstract one, empty for none.
    pub path: String,
}

/// Every Unix socket of this network namespace.
pub fn unix_sockets() -> Vec<UnixSocket> {
    const ACCEPTING: u64 = 0x10000;
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 {
                return None;
            }
            Some(UnixSocket {
                inode: f[6].parse().ok()?,
                listening: u64::from_str_radix(f[3], 16).ok()? & ACCEPTING != 0,
                path: f.get(7).map_or(String::new(), |p| p.to_string()),
            })
        })
        .collect()
}

/// The Unix sockets process `pid` has open.
pub fn unix_sockets_of(pid: u32) -> Vec<UnixSocket> {
    let mine = socket_inodes(pid);
    unix_sockets()
        .into_iter()
        .filter(|s| mine.contains(&s.inode))
        .collect()
}
