//! The only unsafe code for pipes and splicing: thin, safe wrappers over pipe2(2), fcntl(2), splice(2) and
//! shutdown(2). Each wrapper takes borrowed fds, so a call can never outlive the fd it names;
//! pipes are `OwnedFd`s and close on drop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Borrows the fd of a monoio socket (monoio 0.2.4 implements `AsRawFd` but not `AsFd`).
pub(crate) fn socket_fd(stream: &monoio::net::TcpStream) -> BorrowedFd<'_> {
    // SAFETY: the stream owns this fd and keeps it open for as long as `stream` is borrowed.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }
}

/// A fresh non-blocking, close-on-exec pipe: `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` points to two writable ints, which is what pipe2 fills in.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Asks the kernel to resize a pipe (F_SETPIPE_SZ); returns the capacity it granted.
pub(crate) fn set_pipe_size(pipe: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl on a valid borrowed fd with an int argument touches no memory of ours.
    let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// The capacity of a pipe in bytes (F_GETPIPE_SZ).
pub(crate) fn pipe_size(pipe: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: fcntl on a valid borrowed fd without an argument touches no memory of ours.
    let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Sets O_NONBLOCK on an fd (a no-op when it is already set).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL) on a valid borrowed fd touches no memory of ours.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above, with an int argument.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves up to `len` bytes from `from` to `to` (one of them a pipe) without blocking:
/// `Ok(0)` is end of stream, `ErrorKind::WouldBlock` means "wait for readiness and retry".
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: null offsets mean "use and advance the file position" (required for pipes and
        // sockets); the kernel moves bytes between the two borrowed fds and touches no memory of
        // ours.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Half-closes a socket: the peer reads end of stream, our reading side stays open.
pub(crate) fn shutdown_write(socket: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown on a valid borrowed fd touches no memory of ours.
    let rc = unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_WR) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// O_NONBLOCK set on a socket for as long as this guard lives, then the old flags back: for
/// sockets that splice borrows for a while and that go on serving blocking ring operations.
pub(crate) struct NonBlocking<'a> {
    fd: BorrowedFd<'a>,
    restore: bool,
}

impl<'a> NonBlocking<'a> {
    pub(crate) fn set(fd: BorrowedFd<'a>) -> io::Result<Self> {
        // SAFETY: fcntl(F_GETFL) on a valid borrowed fd touches no memory of ours.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK != 0 {
            return Ok(NonBlocking { fd, restore: false });
        }
        // SAFETY: as above, with an int argument.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking { fd, restore: true })
    }
}

impl Drop for NonBlocking<'_> {
    fn drop(&mut self) {
        if !self.restore {
            return;
        }
        // SAFETY: fcntl on the still-borrowed fd touches no memory of ours. A failure leaves the
        // socket non-blocking, which the runtime's drivers handle too.
        unsafe {
            let flags = libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
}
