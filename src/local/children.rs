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
