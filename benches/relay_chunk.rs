//! What one relayed chunk costs the proxy, by size: `splice(2)` socket → pipe → socket (the
//! plaintext tunnel's path) against `recv` + `send` through a userspace buffer. Both run on the
//! same kind of loopback sockets in one thread, so each iteration includes the loopback delivery
//! to the next socket (charged to the sender, as on a real proxy) but no thread wake-ups. The
//! client write and the backend read around the relay are the same in both; what differs is the
//! relay step. Measured here (README, Benchmarks): within a few percent of each other up to 16 KiB
//! per chunk, so small WebSocket messages gain nothing from either; splice pays for bulk bytes
//! (`loadtest/body.sh`).
//!
//!   cargo bench --bench relay_chunk

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// client → (proxy_in | proxy_out) → backend, all on loopback.
struct Path {
    client: TcpStream,
    proxy_in: TcpStream,
    proxy_out: TcpStream,
    backend: TcpStream,
}

fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

impl Path {
    fn new() -> Path {
        let (client, proxy_in) = connected_pair();
        let (proxy_out, backend) = connected_pair();
        proxy_in.set_nonblocking(true).unwrap();
        proxy_out.set_nonblocking(true).unwrap();
        Path {
            client,
            proxy_in,
            proxy_out,
            backend,
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// One non-blocking splice; `None` when it would block.
fn splice(from: RawFd, to: RawFd, len: usize) -> Option<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: plain descriptors and null offsets (sockets and pipes have no file offset).
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "splice: {e}");
        return None;
    }
    Some(n as usize)
}

fn relay_by_splice(path: &Path, pipe: &(OwnedFd, OwnedFd), size: usize) {
    let mut moved = 0;
    while moved < size {
        let Some(n) = splice(path.proxy_in.as_raw_fd(), pipe.1.as_raw_fd(), 64 * 1024) else {
            continue;
        };
        let mut left = n;
        while left > 0 {
            left -= splice(pipe.0.as_raw_fd(), path.proxy_out.as_raw_fd(), left).unwrap_or(0);
        }
        moved += n;
    }
}

fn relay_by_copy(path: &Path, buf: &mut [u8], size: usize) {
    let mut moved = 0;
    let (mut from, mut to) = (&path.proxy_in, &path.proxy_out);
    while moved < size {
        let n = match from.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => panic!("recv: {e}"),
        };
        let mut sent = 0;
        while sent < n {
            match to.write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        moved += n;
    }
}

fn relay_chunk(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay_chunk");
    for size in [38usize, 1024, 16 * 1024] {
        let message = vec![b'x'; size];
        let mut echo = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));

        let path = Path::new();
        let pipe = pipe();
        group.bench_with_input(BenchmarkId::new("splice", size), &size, |b, &size| {
            b.iter(|| {
                (&path.client).write_all(&message).unwrap();
                relay_by_splice(&path, &pipe, size);
                (&path.backend).read_exact(&mut echo).unwrap();
            })
        });

        let path = Path::new();
        let mut buf = vec![0u8; 16 * 1024];
        group.bench_with_input(BenchmarkId::new("recv_send", size), &size, |b, &size| {
            b.iter(|| {
                (&path.client).write_all(&message).unwrap();
                relay_by_copy(&path, &mut buf, size);
                (&path.backend).read_exact(&mut echo).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, relay_chunk);
criterion_main!(benches);
