//! This process: its stop signals, its periodic chores, and its limits
//! (open files, malloc arenas).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The node's small periodic chores, and its stop signals, on one thread
/// ("upkeep"): see [`on_stop_signals`].
#[derive(Clone, Default)]
pub struct Upkeep {
    chores: Arc<Mutex<Vec<Chore>>>,
}

struct Chore {
    every: Duration,
    next: Instant,
    run: Box<dyn FnMut() + Send>,
}

/// The longest the upkeep thread sleeps: a chore added is first run at most
/// this late, and a stop flag set by a signal delivered to a thread that did
/// not block it (see [`on_stop_signals`]) is seen at most this late.
const UPKEEP_NAP: Duration = Duration::from_secs(1);

impl Upkeep {
    /// Runs `chore` every `every` (the first time after `every`), on the
    /// upkeep thread. A chore must be quick and must not block: while it
    /// runs, a stop signal waits. (Work that waits on other processes
    /// belongs on a thread of its own.)
    pub fn every(&self, every: Duration, chore: impl FnMut() + Send + 'static) {
        self.chores.lock().unwrap().push(Chore {
            every,
            next: Instant::now() + every,
            run: Box::new(chore),
        });
    }

    /// Runs the chores that are due; returns how long until the next one.
    fn run_due(&self) -> Duration {
        let now = Instant::now();
        let mut chores = self.chores.lock().unwrap();
        for chore in chores.iter_mut().filter(|c| c.next <= now) {
            (chore.run)();
            chore.next = Instant::now() + chore.every;
        }
        let now = Instant::now();
        chores
            .iter()
            .map(|c| c.next.saturating_duration_since(now))
            .min()
            .unwrap_or(UPKEEP_NAP)
            .min(UPKEEP_NAP)
    }
}

/// SIGINT and SIGTERM, as a signal set.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Waits up to `wait` for SIGINT or SIGTERM (blocked, so pending until
/// taken here); whether one came.
fn take_stop_signal(set: &libc::sigset_t, wait: Duration) -> bool {
    let timeout = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid set and timeout; no siginfo asked for.
    let got = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
    got == libc::SIGINT || got == libc::SIGTERM
}

/// On SIGINT or SIGTERM, runs `stop` and exits with status 0. This matters
/// most as a container's first process, which the kernel gives no default
/// handling of SIGTERM.
///
/// Call it before any other thread starts: it blocks the two signals in the
/// calling thread, and so in every thread started after it, and one thread,
/// "upkeep", takes them with `sigtimedwait` (no polling: it sleeps until a
/// signal or a chore is due). The chores of the returned [`Upkeep`] run on
/// that thread too. A signal that still reaches a thread that does not block
/// it sets the stop flag (the handler of [`catch_stop_signals`]), which the
/// upkeep thread reads at least every second.
pub fn on_stop_signals(stop: impl FnOnce() + Send + 'static) -> Upkeep {
    catch_stop_signals();
    let set = stop_signals();
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let upkeep = Upkeep::default();
    let chores = upkeep.clone();
    std::thread::Builder::new()
        .name("upkeep".into())
        .spawn(move || {
            let mut wait = UPKEEP_NAP;
            while !stop_requested() {
                if take_stop_signal(&set, wait) {
                    STOP.store(true, Ordering::SeqCst);
                    break;
                }
                wait = chores.run_due();
            }
            log::info!("stopping on a signal");
            stop();
            std::process::exit(0);
        })
        .expect("spawn the upkeep thread");
    upkeep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_runs_each_chore_when_it_is_due() {
        let upkeep = Upkeep::default();
        assert_eq!(upkeep.run_due(), UPKEEP_NAP);
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = runs.clone();
        upkeep.every(Duration::from_millis(30), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let wait = upkeep.run_due();
        assert!(wait <= Duration::from_millis(30), "{wait:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 0, "not due yet");
        std::thread::sleep(wait);
        let next = upkeep.run_due();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(next > Duration::from_millis(20), "{next:?}");
    }
}
