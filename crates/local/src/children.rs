//! Child processes of the local-cluster tooling and of the tests: none
//! outlives its parent, and each can be limited and signalled.

use std::process::Command;

/// Makes the child receive SIGTERM when this process dies, however it dies,
/// so that nothing we started outlives us.
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts the child with at most `limit` open files (RLIMIT_NOFILE).
pub fn limit_open_files(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) with a pid we started.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// Copies the output of many children to our stderr, each line prefixed
/// with its child's name, on one thread for all of them (poll(2) over their
/// pipes): a thousand children cost one thread, not two thousand.
///
/// A pipe added is taken into the poll within [`Output::PICK_UP`]; lines
/// are copied whole (a line longer than [`Output::LONGEST`] is cut there);
/// a pipe is dropped at its end, what is left of its last line printed.
pub struct Output {
    added: std::sync::Arc<std::sync::Mutex<Vec<Stream>>>,
    /// Pipes added and not yet at their end.
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// One pipe being read: whose, and the part of a line read so far.
struct Stream {
    name: String,
    file: std::fs::File,
    partial: Vec<u8>,
}

impl Default for Output {
    fn default() -> Self {
        Output::start()
    }
}

impl Output {
    /// How soon a pipe added is read from.
    pub const PICK_UP: std::time::Duration = std::time::Duration::from_millis(100);
    /// The longest line copied whole.
    pub const LONGEST: usize = 64 * 1024;

    /// Starts the copying thread; it runs for as long as the process.
    pub fn start() -> Output {
        let added: std::sync::Arc<std::sync::Mutex<Vec<Stream>>> = Default::default();
        let open: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let (taken, ended) = (added.clone(), open.clone());
        let _ = std::thread::Builder::new()
            .name("output".into())
            .spawn(move || copy_lines(&taken, &ended));
        Output { added, open }
    }

    /// Copies `child`'s stdout and stderr (whichever were piped) from now on.
    pub fn add(&self, name: &str, child: &mut std::process::Child) {
        use std::os::fd::OwnedFd;
        let out = child.stdout.take().map(OwnedFd::from);
        let err = child.stderr.take().map(OwnedFd::from);
        let mut added = self.added.lock().unwrap();
        for fd in [out, err].into_iter().flatten() {
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            added.push(Stream {
                name: name.to_string(),
                file: std::fs::File::from(fd),
                partial: Vec::new(),
            });
        }
    }
}

/// The copying thread: polls every pipe, copies what is whole.
fn copy_lines(added: &std::sync::Mutex<Vec<Stream>>, open: &std::sync::atomic::AtomicUsize) {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let mut streams: Vec<Stream> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        streams.append(&mut added.lock().unwrap());
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .map(|s| libc::pollfd {
                fd: s.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                Output::PICK_UP.as_millis() as libc::c_int,
            )
        };
        if ready <= 0 {
            continue;
        }
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        let mut ended = Vec::new();
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let s = &mut streams[i];
            let end = match s.file.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    s.partial.extend_from_slice(&buf[..n]);
                    false
                }
                Err(e) => {
                    e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::Interrupted
                }
            };
            for line in whole_lines(&mut s.partial, end) {
                let _ = writeln!(err, "{:>8} | {}", s.name, String::from_utf8_lossy(&line));
            }
            if end {
                ended.push(i);
            }
        }
        for i in ended.into_iter().rev() {
            streams.swap_remove(i);
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Takes the whole lines out of `partial` (without their newlines), a line
/// of [`Output::LONGEST`] bytes counting as whole; at the `end` of the
/// stream, the rest too.
fn whole_lines(partial: &mut Vec<u8>, end: bool) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let rest = &partial[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) if n <= Output::LONGEST => {
                lines.push(rest[..n].to_vec());
                start += n + 1;
            }
            _ if rest.len() >= Output::LONGEST => {
                lines.push(rest[..Output::LONGEST].to_vec());
                start += Output::LONGEST;
            }
            _ if end && !rest.is_empty() => {
                lines.push(rest.to_vec());
                start = partial.len();
            }
            _ => break,
        }
    }
    partial.drain(..start);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_copied_by_whole_lines() {
        let mut partial = b"one\ntwo\nthr".to_vec();
        assert_eq!(
            whole_lines(&mut partial, false),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(partial, b"thr");
        partial.extend_from_slice(b"ee\n\nlast");
        assert_eq!(
            whole_lines(&mut partial, false),
            vec![b"three".to_vec(), Vec::new()]
        );
        assert_eq!(whole_lines(&mut partial, true), vec![b"last".to_vec()]);
        assert!(partial.is_empty());
        let mut long = vec![b'x'; Output::LONGEST + 3];
        let lines = whole_lines(&mut long, false);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), Output::LONGEST);
        assert_eq!(long, b"xxx");
    }

    #[test]
    fn one_thread_copies_the_output_of_many_children() {
        let output = Output::start();
        assert_eq!(output.open.load(std::sync::atomic::Ordering::SeqCst), 0);
        let mut children: Vec<std::process::Child> = (0..20)
            .map(|i| {
                let mut child = Command::new("sh")
                    .args(["-c", &format!("echo out {i}; echo err {i} >&2")])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                output.add(&format!("c{i}"), &mut child);
                child
            })
            .collect();
        for c in &mut children {
            assert!(c.wait().unwrap().success());
        }
        // Every pipe is read to its end and dropped.
        let open = || output.open.load(std::sync::atomic::Ordering::SeqCst);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until && open() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(open(), 0, "pipes not read to their end");
    }
}
