//! This process: its stop signals and its limits (open files, malloc arenas).

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

/// Keeps the allocator from holding freed memory in one arena per thread.
///
/// glibc gives busy threads arenas of their own (up to 8 per core) and keeps
/// what they free for reuse there. A node runs dozens of worker threads that
/// allocate request bodies; with 1M keys at the root that retained memory was
/// as large again as the data. Two arenas keep lock contention low on this
/// scale of machine and the heap close to what is live.
///
/// Blocks of 2 MiB and more (answers to `/mget`, replication chunks, the
/// buffers of a client that reads slowly) are always mapped on their own
/// and given back to the system when freed: glibc would otherwise raise
/// that threshold each time such a block is freed, and keep the next ones
/// in the heap, where a node that once held many of them stays that large.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
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

/// On SIGINT or SIGTERM, runs `stop` and exits with status 0. This matters
/// most as a container's first process, which the kernel gives no default
/// handling of SIGTERM.
pub fn on_stop_signals(stop: impl FnOnce() + Send + 'static) {
    catch_stop_signals();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while !stop_requested() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            log::info!("stopping on a signal");
            stop();
            std::process::exit(0);
        })
        .expect("spawn the signal watcher");
}
