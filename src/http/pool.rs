//! A pool of worker threads, started when work needs them and given back
//! after: a node at rest runs none. The pool starts a thread whenever a job
//! arrives with none idle (up to `max`, after which jobs queue), and lets a
//! thread go once it has idled for [`IDLE`]. A frozen node can hold work
//! that waits on it for seconds (a write waiting for a holder's session to
//! end, say); the lane of such work has a large `max`, so that it does not
//! run dry and stall work that waits on nobody.
//!
//! Its threads run `SCHED_BATCH`: a thread of that policy, when woken, does
//! not preempt the one running on its CPU, which is most often the event
//! loop that woke it and still has answers to write. CPU shares are as
//! before (the same weight); only wake-up preemption goes.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a thread idles before it goes.
const IDLE: Duration = Duration::from_secs(10);

/// A pool running jobs of type `J` with `run`.
pub struct Pool<J: Send + 'static> {
    shared: Arc<Shared<J>>,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    work: Condvar,
    run: Box<dyn Fn(J) + Send + Sync>,
    max: usize,
    name: &'static str,
}

struct State<J> {
    queue: VecDeque<J>,
    threads: usize,
    idle: usize,
}

impl<J: Send + 'static> Pool<J> {
    /// A pool of no threads at first, `max` at most, named `name-N`.
    pub fn new(name: &'static str, max: usize, run: impl Fn(J) + Send + Sync + 'static) -> Pool<J> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            work: Condvar::new(),
            run: Box::new(run),
            max: max.max(1),
            name,
        });
        Pool { shared }
    }

    /// Runs `job` on a thread of the pool, starting one if none is idle.
    pub fn submit(&self, job: J) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.queue.push_back(job);
        if state.idle < state.queue.len() && state.threads < self.shared.max {
            spawn(&self.shared, &mut state);
        }
        // Nobody waits when no thread idles: a thread that is busy, or just
        // started, looks at the queue before it waits.
        let waiting = state.idle > 0;
        drop(state);
        if waiting {
            self.shared.work.notify_one();
        }
    }

    /// Threads now, for the tests.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.shared.state.lock().unwrap().threads
    }
}

fn spawn<J: Send + 'static>(shared: &Arc<Shared<J>>, state: &mut State<J>) {
    let s = shared.clone();
    let n = state.threads;
    let started = std::thread::Builder::new()
        .name(format!("{}-{n}", shared.name))
        .spawn(move || {
            batch_policy();
            work(&s)
        });
    match started {
        Ok(_) => state.threads += 1,
        Err(e) => log::warn!("cannot start another {} thread: {e}", shared.name),
    }
}

fn work<J>(shared: &Shared<J>) {
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = state.queue.pop_front() {
            drop(state);
            (shared.run)(job);
            state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        state.idle += 1;
        let (next, waited) = shared
            .work
            .wait_timeout(state, IDLE)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if waited.timed_out() && state.queue.is_empty() {
            state.threads -= 1;
            return;
        }
    }
}

/// Sets the calling thread's scheduling policy to `SCHED_BATCH` (see the
/// module docs).
fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid
    // parameter; SCHED_BATCH needs no privilege.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        log::debug!(
            "cannot set the scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_busy_pool_grows_and_every_job_runs() {
        let (tx, rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let tx = Mutex::new(tx);
        let pool = Pool::new("test", 50, move |n: u32| {
            if n < 10 {
                // Blocks, like work waiting on a frozen node.
                let _ = release_rx.lock().unwrap().recv();
            }
            tx.lock().unwrap().send(n).unwrap();
        });
        for n in 0..10 {
            pool.submit(n);
        }
        // Ten threads wait; a job that waits on nobody still runs at once.
        pool.submit(99);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(99));
        assert!(pool.threads() >= 11, "{} threads", pool.threads());
        for _ in 0..10 {
            release_tx.send(()).unwrap();
        }
        let mut done: Vec<u32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        done.sort();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn the_pool_stops_growing_at_its_bound() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let pool = Pool::new("bounded", 3, move |_: u32| {
            let _ = release_rx.lock().unwrap().recv();
        });
        for n in 0..10 {
            pool.submit(n);
        }
        assert_eq!(pool.threads(), 3);
        for _ in 0..10 {
            release_tx.send(()).unwrap();
        }
    }
}
