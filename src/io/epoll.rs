//! The only unsafe code for the park set's readiness: a thin, safe wrapper over one epoll
//! instance (epoll_create1(2), epoll_ctl(2), epoll_wait(2)). Level-triggered, no timeouts: the
//! caller waits for the epoll fd itself through the runtime and only collects here.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One epoll instance; closes on drop, which also drops every registration in it.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// A readiness event: the registration's token and what happened (`libc::EPOLL*` bits).
#[derive(Clone, Copy)]
pub(crate) struct Event {
    pub token: u64,
    pub events: u32,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes only flags and touches no memory of ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 succeeded, so `fd` is open and nothing else owns it.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for bytes to read or the peer's end (hang-ups and errors are always
    /// reported), naming it `token` in events.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the call's duration; both fds are open.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (before it is handed on or closed: a registration outlives the fd
    /// number while another fd still refers to the same socket).
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; a non-null event pointer keeps pre-2.6.9 kernels' contract too.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd.as_raw_fd(), &mut ev) };
    }

    /// Appends the events ready now to `out`, up to its spare capacity, without waiting.
    /// Returns how many were added.
    pub(crate) fn ready(&self, out: &mut Vec<Event>) -> io::Result<usize> {
        let room = out.capacity() - out.len();
        let mut raw: [libc::epoll_event; 64] = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let max = room.min(raw.len()) as libc::c_int;
        if max == 0 {
            return Ok(0);
        }
        // SAFETY: `raw` holds `max` writable epoll_events; timeout 0 never blocks.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), raw.as_mut_ptr(), max, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        out.extend(raw[..n].iter().map(|e| Event {
            token: e.u64,
            events: e.events,
        }));
        Ok(n)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
