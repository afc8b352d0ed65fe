//! The only unsafe code for socket reads and writes outside monoio: non-blocking recv(2)/sendmsg(2) on a borrowed socket, and
//! views of monoio's owned buffers (which hand out raw pointers). Each wrapper borrows what it
//! touches, so no call can outlive the fd or the buffer it names.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};

/// Reads up to `buf.len()` bytes without blocking: `Ok(0)` is end of stream, `WouldBlock` means
/// "wait for readability".
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice for its whole length.
    unsafe { recv_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// Copies up to `buf.len()` waiting bytes without taking them off the socket (MSG_PEEK), without
/// blocking: a later read sees them again.
pub(crate) fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable slice for its whole length; the fd is borrowed, so open.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
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

/// # Safety
/// `ptr` must be valid for writes of `len` bytes (they need not be initialised).
unsafe fn recv_raw(fd: BorrowedFd<'_>, ptr: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: the caller guarantees `ptr..ptr+len` is writable; the fd is borrowed, so open.
        let n = unsafe { libc::recv(fd.as_raw_fd(), ptr.cast(), len, libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes without blocking and without SIGPIPE; `WouldBlock` means "wait for writability".
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let mut msg: libc::msghdr = unsafe_zeroed_msghdr();
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    loop {
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (documented by std); the
        // slices are borrowed for the call and only read by the kernel.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn unsafe_zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid (empty) value.
    unsafe { std::mem::zeroed() }
}

/// The initialised bytes of a monoio write buffer.
pub(crate) fn init_bytes<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: IoBuf promises `read_ptr` is valid for `bytes_init` initialised bytes for as long
    // as the buffer is borrowed.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// The first non-empty iovec of a vectored write buffer (writes may be partial anyway).
pub(crate) fn first_iovec<T: IoVecBuf>(buf: &T) -> &[u8] {
    // SAFETY: IoVecBuf promises `read_iovec_ptr` points to `read_iovec_len` valid iovecs, each
    // naming initialised bytes, for as long as the buffer is borrowed.
    let iovecs = unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
    for v in iovecs {
        if v.iov_len > 0 {
            // SAFETY: as above, one of those iovecs.
            return unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
        }
    }
    &[]
}

/// Copies `src` into a monoio read buffer from its start (monoio's read contract) and marks
/// those bytes initialised; returns how many fitted.
pub(crate) fn fill<T: IoBufMut>(buf: &mut T, src: &[u8]) -> usize {
    let n = src.len().min(buf.bytes_total());
    // SAFETY: IoBufMut promises `write_ptr` is valid for `bytes_total` bytes; `src` is a distinct
    // borrow (rustls' plaintext buffer), so the ranges cannot overlap; `n` bytes are then
    // initialised, which is what `set_init` records.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
    n
}

/// Same as [`fill`], into the first iovec of a vectored read buffer.
pub(crate) fn fill_vectored<T: IoVecBufMut>(buf: &mut T, src: &[u8]) -> usize {
    if buf.write_iovec_len() == 0 {
        return 0;
    }
    // SAFETY: IoVecBufMut promises at least `write_iovec_len` valid iovecs at `write_iovec_ptr`,
    // each writable for `iov_len` bytes; we write only into the first and record those bytes.
    unsafe {
        let first = &*buf.write_iovec_ptr();
        let n = src.len().min(first.iov_len);
        std::ptr::copy_nonoverlapping(src.as_ptr(), first.iov_base as *mut u8, n);
        buf.set_init(n);
        n
    }
}

/// Reads from a socket into the spare capacity of `buf` (appending); returns the bytes read.
pub(crate) fn recv_into_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    let len = buf.len();
    let spare = buf.capacity() - len;
    // SAFETY: the spare capacity `len..capacity` is allocated and writable; after the kernel
    // wrote `n` bytes there, exactly those become initialised and part of the Vec.
    unsafe {
        let n = recv_raw(fd, buf.as_mut_ptr().add(len), spare)?;
        buf.set_len(len + n);
        Ok(n)
    }
}
