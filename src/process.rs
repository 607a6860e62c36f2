//! Child processes and signals, for the commands that start other processes.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag that [`stop_requested`] reads.
pub fn catch_stop_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

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

/// Keeps the allocator from holding freed memory in one arena per thread.
///
/// glibc gives busy threads arenas of their own (up to 8 per core) and keeps
/// what they free for reuse there. A node runs dozens of worker threads that
/// allocate request bodies; with 1M keys at the root that retained memory was
/// as large again as the data. Two arenas keep lock contention low on this
/// scale of machine and the heap close to what is live.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Raises this process's limit on open files to the most it may have:
/// every client connection holds one.
pub fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Exits with status 0 on SIGINT or SIGTERM. A node keeps nothing that a
/// clean stop would have to save; this matters most as a container's first
/// process, which the kernel gives no default handling of SIGTERM.
pub fn exit_on_stop_signals() {
    catch_stop_signals();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| loop {
            if stop_requested() {
                log::info!("stopping on a signal");
                std::process::exit(0);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        })
        .expect("spawn the signal watcher");
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
