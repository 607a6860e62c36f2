//! Appending to the log, with group commit.
//!
//! Writers put their record's frame into a shared buffer and wait on the
//! batch it belongs to. One thread, the syncer, takes the whole buffer,
//! writes it with one `write`, syncs it with one `fdatasync` (under
//! `--fsync always`), and wakes every writer of the batch at once: however
//! many writes arrive during one sync, they share the next one.
//!
//! Failures, each reported to exactly the writers of the failed batch:
//! - the disk is full: the batch is cut off the file again and its writers
//!   get [`WalError::DiskFull`]; later batches are tried as usual;
//! - another write error: the same, with [`WalError::Io`];
//! - a failed sync: what the kernel kept is unknown (it may have dropped the
//!   dirty pages and cleared the error), so the log is poisoned: this batch
//!   and every later one get [`WalError::Poisoned`] until the process
//!   restarts and recovery reads what is really on disk. The sync is never
//!   retried.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::dir::DataDir;
use super::record::{self, Edit};
use super::{Fsync, WalError, WalStats};

/// The writers of one batch wait here for its outcome: first that it is
/// written to the file (`written`), then that it is synced (`outcome`).
#[derive(Default)]
struct Batch {
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
    written: Mutex<bool>,
    /// Signalled when the batch is written, or has its outcome.
    written_or_done: Condvar,
}

#[derive(Clone, Debug)]
struct Outcome {
    /// Written to the file (the kernel has it).
    written: Result<(), WalError>,
    /// Synced to the disk, when the mode syncs each batch.
    synced: bool,
}

impl Batch {
    fn finish(&self, outcome: Outcome) {
        // Under `written`'s lock too, so that no waiter of `wait_written`
        // misses it between its two looks.
        let _written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.done.notify_all();
        self.written_or_done.notify_all();
    }

    /// The batch is in the file; its sync comes next.
    fn written(&self) {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.written_or_done.notify_all();
    }

    /// Waits until the batch is in the file (`Ok`) or has failed (its
    /// outcome).
    fn wait_written(&self) -> Result<(), Outcome> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *written {
                return Ok(());
            }
            if let Some(o) = self
                .outcome
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                return Err(o.clone());
            }
            written = self
                .written_or_done
                .wait(written)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn wait(&self) -> Outcome {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(o) = slot.as_ref() {
                return o.clone();
            }
            slot = self.done.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct State {
    buffer: Vec<u8>,
    batch: Arc<Batch>,
    next_seq: u64,
    poisoned: Option<String>,
    /// Set at shutdown: no more records are taken.
    closed: bool,
    /// A request to start a new file (compaction), answered with its number.
    rotate: Option<std::sync::mpsc::SyncSender<Result<u64, WalError>>>,
}

/// The appending end of the log. See the module documentation.
pub struct Writer {
    state: Mutex<State>,
    wake: Condvar,
    mode: Fsync,
    stats: Arc<WalStats>,
}

/// What the syncer owns: the file being appended to.
struct Tail {
    dir: Arc<DataDir>,
    number: u64,
    path: PathBuf,
    file: File,
    len: u64,
    /// Where the file ends on disk, as far as a sync has said.
    synced_len: u64,
    last_sync: Instant,
    unsynced: bool,
}

impl Writer {
    /// Starts appending to a new log file `number` in `dir`, records
    /// counting from `next_seq`; the syncer runs on a thread of its own.
    pub(super) fn start(
        dir: Arc<DataDir>,
        number: u64,
        next_seq: u64,
        mode: Fsync,
        stats: Arc<WalStats>,
    ) -> Result<Arc<Writer>, WalError> {
        let tail = Tail::create(dir, number)?;
        let writer = Arc::new(Writer {
            state: Mutex::new(State {
                buffer: Vec::with_capacity(64 * 1024),
                batch: Arc::default(),
                next_seq,
                poisoned: None,
                closed: false,
                rotate: None,
            }),
            wake: Condvar::new(),
            mode,
            stats,
        });
        let w = writer.clone();
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || w.run(tail))
            .map_err(|e| WalError::Io(format!("cannot start the log's thread: {e}")))?;
        Ok(writer)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a write of `key`; returns once it is as durable as the mode
    /// promises: synced (`always`), or written to the file (`everysec`,
    /// `no`). Runs `during` once the record is in the file (the kernel has
    /// it: a full disk or a write error would have been reported by then,
    /// and `during` is not run), while it is synced. Returns the append's
    /// outcome and what `during` returned, if it ran.
    pub fn append_then<R>(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        edit: Edit<'_>,
        during: impl FnOnce() -> R,
    ) -> (Result<(), WalError>, Option<R>) {
        let batch = {
            let mut s = self.state();
            if let Some(why) = &s.poisoned {
                return (Err(WalError::Poisoned(why.clone())), None);
            }
            if s.closed {
                return (Err(WalError::Closed), None);
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            record::encode_write(&mut s.buffer, seq, key, version, expires_ms, edit);
            s.batch.clone()
        };
        self.wake.notify_one();
        let ran = match batch.wait_written() {
            Ok(()) => Some(during()),
            Err(_) => None,
        };
        let outcome = batch.wait();
        if let Err(e) = outcome.written {
            return (Err(e), ran);
        }
        if self.mode == Fsync::Always && !outcome.synced {
            return (
                Err(WalError::Poisoned("the log could not be synced".into())),
                ran,
            );
        }
        (Ok(()), ran)
    }

    /// Stops taking records, writes and syncs what is buffered, and returns
    /// when the file is synced (or the sync failed).
    pub fn close(&self) -> Result<(), WalError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut s = self.state();
            if s.closed {
                return Ok(());
            }
            s.closed = true;
            s.rotate = Some(tx);
        }
        self.wake.notify_one();
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| WalError::Io("the log's thread did not answer".into()))?
            .map(drop)
    }

    /// Starts a new log file after everything appended so far, synced; returns its number.
    pub fn rotate(&self) -> Result<u64, WalError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut s = self.state();
            if s.closed {
                return Err(WalError::Closed);
            }
            s.rotate = Some(tx);
        }
        self.wake.notify_one();
        rx.recv()
            .map_err(|_| WalError::Io("the log's thread is gone".into()))?
    }

    /// The syncer's loop.
    fn run(&self, mut tail: Tail) {
        loop {
            let (buffer, batch, rotate, closed) = {
                let mut s = self.state();
                loop {
                    let due = self.mode == Fsync::EverySec
                        && tail.unsynced
                        && tail.last_sync.elapsed() >= Duration::from_secs(1);
                    if !s.buffer.is_empty() || s.rotate.is_some() || due {
                        break;
                    }
                    s = self
                        .wake
                        .wait_timeout(s, Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let buffer = std::mem::replace(&mut s.buffer, Vec::with_capacity(64 * 1024));
                let batch = std::mem::take(&mut s.batch);
                (buffer, batch, s.rotate.take(), s.closed)
            };
            if !buffer.is_empty() {
                let outcome = self.write_batch(&mut tail, &buffer, &batch);
                batch.finish(outcome);
            } else {
                batch.finish(Outcome {
                    written: Ok(()),
                    synced: true,
                });
            }
            if self.mode == Fsync::EverySec
                && tail.unsynced
                && tail.last_sync.elapsed() >= Duration::from_secs(1)
            {
                let _ = self.sync(&mut tail);
            }
            if let Some(answer) = rotate {
                if closed {
                    // The file and the directory's lock go before the answer,
                    // so that whoever waits on it may open the directory again.
                    let result = self.sync(&mut tail).map(|()| tail.number);
                    drop(tail);
                    let _ = answer.send(result);
                    return;
                }
                let result = self.sync(&mut tail).and_then(|()| {
                    tail = Tail::create_after(&tail)?;
                    Ok(tail.number)
                });
                let _ = answer.send(result);
            }
        }
    }

    /// Writes one batch; cuts it off the file again if the write failed.
    fn write_batch(&self, tail: &mut Tail, buffer: &[u8], batch: &Batch) -> Outcome {
        if let Some(why) = self.state().poisoned.clone() {
            return Outcome {
                written: Err(WalError::Poisoned(why)),
                synced: false,
            };
        }
        if let Err(e) = tail.file.write_all(buffer) {
            let error = if e.raw_os_error() == Some(libc::ENOSPC) {
                WalError::DiskFull(format!("{}: {e}", tail.path.display()))
            } else {
                WalError::Io(format!("{}: {e}", tail.path.display()))
            };
            log::error!("writing the log failed: {error}");
            // The file must end where the last good record ends, or the
            // next batch would follow half a record.
            if let Err(e) = tail.file.set_len(tail.len) {
                self.poison(format!(
                    "cutting a failed write off {} failed: {e}",
                    tail.path.display()
                ));
            }
            return Outcome {
                written: Err(error),
                synced: false,
            };
        }
        tail.len += buffer.len() as u64;
        tail.unsynced = true;
        self.stats.add_bytes(buffer.len() as u64);
        batch.written();
        let synced = self.mode == Fsync::Always && self.sync(tail).is_ok();
        Outcome {
            written: Ok(()),
            synced,
        }
    }

    /// Syncs the file; a failure poisons the log for good.
    fn sync(&self, tail: &mut Tail) -> Result<(), WalError> {
        if !tail.unsynced {
            return Ok(());
        }
        let started = Instant::now();
        let result = tail.file.sync_data();
        self.stats.observe_fsync(started.elapsed());
        match result {
            Ok(()) => {
                tail.unsynced = false;
                tail.synced_len = tail.len;
                tail.last_sync = Instant::now();
                Ok(())
            }
            Err(e) => {
                let why = format!(
                    "syncing {} failed ({e}); what is on disk is unknown until a restart",
                    tail.path.display()
                );
                self.poison(why.clone());
                if self.mode == Fsync::Always {
                    // Under `always` nothing past the last sync was
                    // acknowledged: cut it off, so that a restart of the
                    // process does not bring back writes whose clients were
                    // told they failed. (After a crash of the machine, what
                    // the disk holds is unknown either way.)
                    if let Err(e) = tail.file.set_len(tail.synced_len) {
                        log::error!(
                            "cutting unsynced writes off {} failed: {e}",
                            tail.path.display()
                        );
                    }
                }
                Err(WalError::Poisoned(why))
            }
        }
    }

    fn poison(&self, why: String) {
        log::error!("{why}; refusing every write from now on");
        let mut s = self.state();
        if s.poisoned.is_none() {
            s.poisoned = Some(why);
        }
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.state().poisoned.clone()
    }
}

impl Tail {
    fn create(dir: Arc<DataDir>, number: u64) -> Result<Tail, WalError> {
        let path = dir.log_path(number);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| WalError::Io(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| WalError::Io(format!("{}: {e}", path.display())))?
            .len();
        dir.sync().map_err(|e| WalError::Io(e.to_string()))?;
        Ok(Tail {
            dir,
            number,
            path,
            file,
            len,
            synced_len: len,
            last_sync: Instant::now(),
            unsynced: false,
        })
    }

    /// The file after `old`.
    fn create_after(old: &Tail) -> Result<Tail, WalError> {
        Tail::create(old.dir.clone(), old.number + 1)
    }
}
