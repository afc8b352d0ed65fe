//! `--detach`: run the server in a child process and return once it is serving. systemd's
//! ExecReload waits for its command to exit, so the reload command must leave the new server
//! running and report whether the takeover worked: the parent waits on a pipe for the child's
//! "ok" and exits 0, or with the child's own exit status when it failed.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

/// The child's end: say "ok" once serving.
pub struct ReadyPipe(std::fs::File);

impl ReadyPipe {
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"ok");
    }
}

pub enum Detached {
    /// In the child: carry on starting the server.
    Child(ReadyPipe),
    /// In the parent: the child is serving (0) or failed (its status); exit with this.
    Parent(ExitCode),
}

/// Forks. Must run before any thread starts (only the calling thread survives a fork).
pub fn detach() -> io::Result<Detached> {
    let (read, write) = pipe()?;
    match fork()? {
        0 => {
            drop(read);
            // A session of its own: the launching shell's hang-up or Ctrl-C does not reach it.
            // SAFETY: setsid takes no arguments and touches no memory of ours.
            unsafe { libc::setsid() };
            Ok(Detached::Child(ReadyPipe(std::fs::File::from(write))))
        }
        child => {
            drop(write);
            let mut said = Vec::new();
            let _ = std::fs::File::from(read).read_to_end(&mut said);
            if said == b"ok" {
                eprintln!("ringway: pid {child} is serving");
                return Ok(Detached::Parent(ExitCode::SUCCESS));
            }
            let code = wait(child).unwrap_or(1);
            Ok(Detached::Parent(ExitCode::from(if code == 0 { 1 } else { code as u8 })))
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` points to two writable ints, which is what pipe2 fills in.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: called while the process has a single thread, so the child's copy of every lock
    // and allocator state is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// The exit status of a child that ended (128 + signal when killed).
fn wait(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid writes one int, which `status` is.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    if rc < 0 {
        return None;
    }
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        Some(128 + libc::WTERMSIG(status))
    }
}
