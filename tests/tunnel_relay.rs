//! The tunnel relays over real loopback sockets: a test "proxy" accepts a client, connects to a
//! test backend and hands both sockets to `splice_relay` or `copy_relay`.
//!
//! Every test runs under both monoio drivers: it re-runs itself in a child process, once as is
//! (FusionDriver: io_uring where the kernel allows it) and once with
//! `MONOIO_FORCE_LEGACY_DRIVER=1` (epoll). The child process also keeps fd and thread counts free
//! of other tests' noise. Measured figures are printed: `cargo test --test tunnel_relay --
//! --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use ringway::tunnel::{copy_relay, splice_relay, PipePool, TunnelEnd, TunnelLimits, TunnelStats};

const CHILD_ENV: &str = "RINGWAY_TUNNEL_TEST_CHILD";
const MIB: usize = 1024 * 1024;

/// Counts live heap bytes, so the idle-tunnel test can say what one idle tunnel holds.
struct CountingHeap;

static HEAP_LIVE: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static HEAP: CountingHeap = CountingHeap;

// SAFETY: every call is forwarded unchanged to the system allocator; only byte counts are added.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            HEAP_LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            HEAP_LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            HEAP_LIVE.fetch_add(new_size, Ordering::Relaxed);
            HEAP_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

fn heap_live() -> usize {
    HEAP_LIVE.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Running under both drivers

fn on_both_drivers<F, Fut>(name: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    match std::env::var(CHILD_ENV) {
        Ok(expected) => run_here(&expected, body),
        Err(_) => {
            for legacy in [false, true] {
                run_in_child(name, legacy);
            }
        }
    }
}

fn run_here<F, Fut>(expected: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("build the monoio runtime");
    let driver = match &runtime {
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "epoll",
    };
    if expected == "legacy" {
        assert_eq!(driver, "epoll", "MONOIO_FORCE_LEGACY_DRIVER=1 must select epoll");
    }
    eprintln!("[driver: {driver}]");
    runtime.block_on(async {
        monoio::time::timeout(Duration::from_secs(60), body())
            .await
            .expect("test body took over 60 s");
    });
}

fn run_in_child(name: &str, legacy: bool) {
    let mut cmd = Command::new(std::env::current_exe().expect("path of the test binary"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    if legacy {
        cmd.env(CHILD_ENV, "legacy").env("MONOIO_FORCE_LEGACY_DRIVER", "1");
    } else {
        cmd.env(CHILD_ENV, "fusion").env_remove("MONOIO_FORCE_LEGACY_DRIVER");
    }
    let out = cmd.output().expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let label = if legacy {
        "MONOIO_FORCE_LEGACY_DRIVER=1"
    } else {
        "default driver"
    };
    eprintln!("--- {name} ({label}) ---\n{}", stderr.trim_end());
    assert!(
        out.status.success(),
        "{name} failed under {label}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "the child did not run {name}:\n{stdout}");
}

// ---------------------------------------------------------------------------------------------
// A minimal proxy around the relay under test

#[derive(Clone, Copy, Debug, PartialEq)]
enum Relay {
    Splice,
    Copy,
}

struct Proxy {
    addr: SocketAddr,
    backend_addr: SocketAddr,
    backend: TcpListener,
    pool: Rc<PipePool>,
    /// Finished tunnels, with the moment each relay returned.
    ended: Rc<RefCell<Vec<(Instant, TunnelStats)>>>,
    /// Size of one relay future: the relay's own state per tunnel.
    future_bytes: Rc<Cell<usize>>,
}

impl Proxy {
    fn start(relay: Relay, limits: TunnelLimits) -> Proxy {
        let backend = TcpListener::bind("127.0.0.1:0").expect("bind the backend listener");
        Proxy::start_with_backend(relay, limits, backend)
    }

    fn start_with_backend(relay: Relay, limits: TunnelLimits, backend: TcpListener) -> Proxy {
        let front = TcpListener::bind("127.0.0.1:0").expect("bind the proxy listener");
        let addr = front.local_addr().unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let pool = Rc::new(PipePool::new(64 * 1024, 64));
        let ended = Rc::new(RefCell::new(Vec::new()));
        let future_bytes = Rc::new(Cell::new(0));
        let (p, e, f) = (pool.clone(), ended.clone(), future_bytes.clone());
        monoio::spawn(async move {
            loop {
                let (client, _) = front.accept().await.expect("proxy accept");
                let upstream = TcpStream::connect_addr(backend_addr)
                    .await
                    .expect("proxy connect to the backend");
                let (pool, ended, future_bytes) = (p.clone(), e.clone(), f.clone());
                let limits = limits.clone();
                // One task shape per relay, so a task holds only the future it runs.
                match relay {
                    Relay::Splice => monoio::spawn(async move {
                        // Pinned in place: `let f = ..; f.await` would store the future twice.
                        let relay = pin!(splice_relay(client, upstream, &pool, &limits));
                        future_bytes.set(std::mem::size_of_val(&*relay));
                        let stats = relay.await;
                        ended.borrow_mut().push((Instant::now(), stats));
                    }),
                    Relay::Copy => monoio::spawn(async move {
                        let relay = pin!(copy_relay(client, upstream, &limits));
                        future_bytes.set(std::mem::size_of_val(&*relay));
                        let stats = relay.await;
                        ended.borrow_mut().push((Instant::now(), stats));
                    }),
                };
            }
        });
        Proxy {
            addr,
            backend_addr,
            backend,
            pool,
            ended,
            future_bytes,
        }
    }

    /// A tunnel: (the client's end, the backend's end).
    async fn open(&self) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect_addr(self.addr).await.expect("connect to the proxy");
        let (upstream, _) = self.backend.accept().await.expect("backend accept");
        (client, upstream)
    }

    async fn wait_ended(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ended.borrow().len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} tunnels ended",
                self.ended.borrow().len()
            );
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn ended_count(&self) -> usize {
        self.ended.borrow().len()
    }

    /// A direct connection to the backend, no proxy: what the test's own ends cost.
    async fn open_direct(&self) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect_addr(self.backend_addr)
            .await
            .expect("connect to the backend");
        let (upstream, _) = self.backend.accept().await.expect("backend accept");
        (client, upstream)
    }

    /// The only tunnel that ended, once it has.
    async fn single_end(&self) -> (Instant, TunnelStats) {
        self.wait_ended(1).await;
        let mut ended = self.ended.borrow_mut();
        assert_eq!(ended.len(), 1);
        ended.pop().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn write_all<W: AsyncWriteRent>(w: &mut W, data: Vec<u8>) {
    let (result, _) = w.write_all(data).await;
    result.expect("write");
}

async fn read_exact<R: AsyncReadRent>(r: &mut R, len: usize) -> Vec<u8> {
    let (result, buf) = r.read_exact(Vec::with_capacity(len)).await;
    result.expect("read_exact");
    buf
}

async fn read_to_end<R: AsyncReadRent>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let (result, filled) = r.read(buf).await;
        let n = result.expect("read");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&filled[..n]);
        buf = filled;
    }
}

/// Reads until the peer closes; `Ok(0)` or an error both count as closed.
async fn closed_within<R: AsyncReadRent>(r: &mut R, limit: Duration) -> bool {
    let read = r.read(Vec::with_capacity(64));
    match monoio::time::timeout(limit, read).await {
        Ok((Ok(0), _)) | Ok((Err(_), _)) => true,
        Ok((Ok(_), _)) | Err(_) => false,
    }
}

/// Under io_uring a dropped socket is closed by a queued op, and earlier tests' proxies may still
/// have some in flight: give the ring a moment before counting fds.
async fn settle() {
    monoio::time::sleep(Duration::from_millis(50)).await;
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).expect(path).count()
}

fn fds() -> usize {
    count_dir("/proc/self/fd")
}

fn threads() -> usize {
    count_dir("/proc/self/task")
}

fn assert_both_closed(stats: &TunnelStats) {
    assert!(matches!(stats.end, TunnelEnd::BothClosed), "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// 1 MiB each way

#[test]
fn transfers_1mib_each_way_intact() {
    on_both_drivers("transfers_1mib_each_way_intact", || async {
        transfer_1mib(Relay::Splice).await;
        transfer_1mib(Relay::Copy).await;
    });
}

async fn transfer_1mib(relay: Relay) {
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let (client, upstream) = proxy.open().await;
    let up = pattern(1, MIB);
    let down = pattern(2, MIB);
    let started = Instant::now();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let send_up = monoio::spawn({
        let up = up.clone();
        async move {
            write_all(&mut client_write, up).await;
            client_write.shutdown().await.unwrap();
        }
    });
    let send_down = monoio::spawn({
        let down = down.clone();
        async move {
            write_all(&mut upstream_write, down).await;
            upstream_write.shutdown().await.unwrap();
        }
    });
    let receive_up = monoio::spawn(async move { read_to_end(&mut upstream_read).await });
    let got_down = read_to_end(&mut client_read).await;
    let got_up = receive_up.await;
    send_up.await;
    send_down.await;
    let elapsed = started.elapsed();

    assert_eq!(got_up.len(), MIB);
    assert_eq!(fnv1a(&got_up), fnv1a(&up), "client → upstream corrupted");
    assert_eq!(got_down.len(), MIB);
    assert_eq!(fnv1a(&got_down), fnv1a(&down), "upstream → client corrupted");

    let (_, stats) = proxy.single_end().await;
    assert_both_closed(&stats);
    assert_eq!(stats.client_to_upstream, MIB as u64);
    assert_eq!(stats.upstream_to_client, MIB as u64);
    assert_eq!(proxy.pool.in_use(), 0);
    if relay == Relay::Splice {
        assert!(proxy.pool.idle() >= 1, "drained pipes go back to the pool");
    }
    eprintln!(
        "{relay:?}: 1 MiB each way in {elapsed:?} (debug build); pipes created {}, idle {}",
        proxy.pool.created(),
        proxy.pool.idle()
    );
}

// ---------------------------------------------------------------------------------------------
// 10,000 small messages, ping-pong then back to back

const MESSAGES: usize = 10_000;
const MESSAGE_LEN: usize = 64;

fn message(tag: u8, i: usize) -> Vec<u8> {
    let mut m = vec![tag; MESSAGE_LEN];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m
}

#[test]
fn relays_10000_small_messages() {
    on_both_drivers("relays_10000_small_messages", || async {
        small_messages(Relay::Splice).await;
        small_messages(Relay::Copy).await;
    });
}

async fn small_messages(relay: Relay) {
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let (mut client, mut upstream) = proxy.open().await;

    let started = Instant::now();
    let echo = monoio::spawn(async move {
        for i in 0..MESSAGES {
            assert_eq!(read_exact(&mut upstream, MESSAGE_LEN).await, message(b'c', i));
            write_all(&mut upstream, message(b'u', i)).await;
        }
        upstream
    });
    for i in 0..MESSAGES {
        write_all(&mut client, message(b'c', i)).await;
        assert_eq!(read_exact(&mut client, MESSAGE_LEN).await, message(b'u', i));
    }
    let upstream = echo.await;
    let ping_pong = started.elapsed();

    // Back to back: both sides fire all their messages at once, each in its own write.
    let started = Instant::now();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let up_writer = monoio::spawn(async move {
        for i in 0..MESSAGES {
            write_all(&mut client_write, message(b'C', i)).await;
        }
        client_write.shutdown().await.unwrap();
    });
    let down_writer = monoio::spawn(async move {
        for i in 0..MESSAGES {
            write_all(&mut upstream_write, message(b'U', i)).await;
        }
        upstream_write.shutdown().await.unwrap();
    });
    let up_reader = monoio::spawn(async move { read_to_end(&mut upstream_read).await });
    let got_down = read_to_end(&mut client_read).await;
    let got_up = up_reader.await;
    up_writer.await;
    down_writer.await;
    let burst = started.elapsed();
    let expected_up: Vec<u8> = (0..MESSAGES).flat_map(|i| message(b'C', i)).collect();
    let expected_down: Vec<u8> = (0..MESSAGES).flat_map(|i| message(b'U', i)).collect();
    assert!(got_up == expected_up, "client → upstream burst corrupted");
    assert!(got_down == expected_down, "upstream → client burst corrupted");

    let (_, stats) = proxy.single_end().await;
    assert_both_closed(&stats);
    let per_direction = (2 * MESSAGES * MESSAGE_LEN) as u64;
    assert_eq!(stats.client_to_upstream, per_direction);
    assert_eq!(stats.upstream_to_client, per_direction);
    assert_eq!(proxy.pool.in_use(), 0);
    eprintln!(
        "{relay:?}: {MESSAGES} round trips in {ping_pong:?}, {MESSAGES} messages each way back to \
         back in {burst:?} (debug build); pipes created {}",
        proxy.pool.created()
    );
}

#[test]
fn small_bursts_to_a_slow_reader_wait_and_arrive_intact() {
    on_both_drivers("small_bursts_to_a_slow_reader_wait_and_arrive_intact", || async {
        // A backend with a tiny receive buffer that does not read at first: the relay soon finds
        // the peer full with bytes still in its pipe and must wait for writability, many times.
        let opts = monoio::net::ListenerOpts::new().recv_buf_size(4096);
        let backend = TcpListener::bind_with_config("127.0.0.1:0", &opts).expect("bind the backend listener");
        let proxy = Proxy::start_with_backend(Relay::Splice, TunnelLimits::default(), backend);
        let (client, upstream) = proxy.open().await;
        let data = pattern(3, 4 * MIB);
        let (client_read, mut client_write) = client.into_split();
        let writer = monoio::spawn({
            let data = data.clone();
            async move {
                // Many small writes: the relay sees bursts of every size, not one big stream.
                for piece in data.chunks(1000) {
                    write_all(&mut client_write, piece.to_vec()).await;
                }
                client_write.shutdown().await.unwrap();
            }
        });
        monoio::time::sleep(Duration::from_millis(300)).await;
        let (mut upstream_read, upstream_write) = upstream.into_split();
        let got = read_to_end(&mut upstream_read).await;
        writer.await;
        assert_eq!(got.len(), data.len());
        assert_eq!(fnv1a(&got), fnv1a(&data), "client → upstream bytes lost or reordered");
        drop((upstream_read, upstream_write, client_read));

        let (_, stats) = proxy.single_end().await;
        assert_both_closed(&stats);
        assert_eq!(stats.client_to_upstream, data.len() as u64);
        assert_eq!(proxy.pool.in_use(), 0, "every pipe is back in the pool");
    });
}

// ---------------------------------------------------------------------------------------------
// Half-close

#[test]
fn half_close_keeps_the_other_direction_flowing() {
    on_both_drivers("half_close_keeps_the_other_direction_flowing", || async {
        for relay in [Relay::Splice, Relay::Copy] {
            half_close_client_first(relay).await;
            half_close_upstream_first(relay).await;
        }
    });
}

async fn half_close_client_first(relay: Relay) {
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let (mut client, mut upstream) = proxy.open().await;
    write_all(&mut client, b"request".to_vec()).await;
    client.shutdown().await.unwrap();
    // The backend sees the request and then end of stream...
    assert_eq!(read_to_end(&mut upstream).await, b"request");
    // ...and can still answer, at length, while the tunnel is half closed.
    let answer = pattern(3, 256 * 1024);
    let writer = monoio::spawn({
        let answer = answer.clone();
        async move {
            write_all(&mut upstream, answer).await;
            upstream.shutdown().await.unwrap();
            upstream
        }
    });
    assert!(read_to_end(&mut client).await == answer, "{relay:?}: answer corrupted");
    drop(writer.await);
    let (_, stats) = proxy.single_end().await;
    assert_both_closed(&stats);
    assert_eq!(stats.client_to_upstream, 7);
    assert_eq!(stats.upstream_to_client, answer.len() as u64);
}

async fn half_close_upstream_first(relay: Relay) {
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let (mut client, mut upstream) = proxy.open().await;
    write_all(&mut upstream, b"greeting".to_vec()).await;
    upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"greeting");
    let upload = pattern(4, 256 * 1024);
    let writer = monoio::spawn({
        let upload = upload.clone();
        async move {
            write_all(&mut client, upload).await;
            client.shutdown().await.unwrap();
            client
        }
    });
    assert!(
        read_to_end(&mut upstream).await == upload,
        "{relay:?}: upload corrupted"
    );
    drop(writer.await);
    let (_, stats) = proxy.single_end().await;
    assert_both_closed(&stats);
    assert_eq!(stats.client_to_upstream, upload.len() as u64);
    assert_eq!(stats.upstream_to_client, 8);
}

// ---------------------------------------------------------------------------------------------
// Reset

#[test]
fn reset_on_either_side_closes_both() {
    on_both_drivers("reset_on_either_side_closes_both", || async {
        for relay in [Relay::Splice, Relay::Copy] {
            client_reset(relay).await;
            upstream_reset(relay).await;
        }
    });
}

/// Closing a socket with unread bytes in its receive queue makes the kernel send RST, not FIN.
async fn client_reset(relay: Relay) {
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let (client, mut upstream) = proxy.open().await;
    write_all(&mut upstream, b"never read".to_vec()).await;
    client.readable(false).await.unwrap();
    drop(client);
    assert!(
        closed_within(&mut upstream, Duration::from_secs(5)).await,
        "{relay:?}: the backend's side stayed open after the client reset"
    );
    let (_, stats) = proxy.single_end().await;
    match &stats.end {
        TunnelEnd::ClientError(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{relay:?}: {e}")
        }
        other => panic!("{relay:?}: expected a client error, got {other:?}"),
    }
}

async fn upstream_reset(relay: Relay) {
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let (mut client, upstream) = proxy.open().await;
    write_all(&mut client, b"never read".to_vec()).await;
    upstream.readable(false).await.unwrap();
    drop(upstream);
    assert!(
        closed_within(&mut client, Duration::from_secs(5)).await,
        "{relay:?}: the client's side stayed open after the backend reset"
    );
    let (_, stats) = proxy.single_end().await;
    match &stats.end {
        TunnelEnd::UpstreamError(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{relay:?}: {e}")
        }
        other => panic!("{relay:?}: expected an upstream error, got {other:?}"),
    }
    assert_eq!(proxy.pool.in_use(), 0);
}

// ---------------------------------------------------------------------------------------------
// Idle timeout and maximum lifetime

#[test]
fn idle_timeout_and_max_lifetime_end_the_tunnel() {
    on_both_drivers("idle_timeout_and_max_lifetime_end_the_tunnel", || async {
        for relay in [Relay::Splice, Relay::Copy] {
            idle_timeout(relay).await;
            max_lifetime(relay).await;
        }
    });
}

async fn idle_timeout(relay: Relay) {
    let idle = Duration::from_millis(300);
    let limits = TunnelLimits {
        idle_timeout: idle,
        max_lifetime: None,
    };
    let proxy = Proxy::start(relay, limits);
    let (mut client, mut upstream) = proxy.open().await;
    // Traffic every 50 ms, alternating directions, for three idle periods: the tunnel lives.
    // The relay saw the last byte after it was written and before it was read here: the
    // silence it measures starts between `last_written` and `last_read`.
    let (mut last_written, mut last_read) = (Instant::now(), Instant::now());
    for i in 0..18 {
        last_written = Instant::now();
        if i % 2 == 0 {
            write_all(&mut client, vec![b'c']).await;
            read_exact(&mut upstream, 1).await;
        } else {
            write_all(&mut upstream, vec![b'u']).await;
            read_exact(&mut client, 1).await;
        }
        last_read = Instant::now();
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.ended_count(), 0, "{relay:?}: ended while traffic flowed");
    assert!(closed_within(&mut client, Duration::from_secs(3)).await);
    assert!(closed_within(&mut upstream, Duration::from_secs(3)).await);
    let (at, stats) = proxy.single_end().await;
    assert!(matches!(stats.end, TunnelEnd::IdleTimeout), "{stats:?}");
    // Bounds that hold however long this thread waited between the relay's steps and its own.
    let (most, least) = (at - last_written, at - last_read);
    assert!(
        most >= idle && least < idle + Duration::from_secs(1),
        "{relay:?}: ended {least:?} to {most:?} after the last byte, idle timeout {idle:?}"
    );
    eprintln!("{relay:?}: idle timeout {idle:?} fired {least:?} to {most:?} after the last byte");
}

async fn max_lifetime(relay: Relay) {
    let max = Duration::from_millis(500);
    let limits = TunnelLimits {
        idle_timeout: Duration::from_secs(10),
        max_lifetime: Some(max),
    };
    let proxy = Proxy::start(relay, limits);
    // Before the relay starts its clock: `lived` is never shorter than the relay's lifetime.
    let opened = Instant::now();
    let (mut client, mut upstream) = proxy.open().await;
    while proxy.ended_count() == 0 {
        assert!(opened.elapsed() < Duration::from_secs(5), "{relay:?}: never ended");
        let (written, _) = client.write_all(vec![b'c']).await;
        if written.is_ok() {
            let _ = upstream.read(Vec::with_capacity(8)).await;
        }
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
    let (at, stats) = proxy.single_end().await;
    assert!(matches!(stats.end, TunnelEnd::MaxLifetime), "{stats:?}");
    let lived = at - opened;
    assert!(
        lived >= max && lived < max + Duration::from_secs(1),
        "{relay:?}: lived {lived:?}, max lifetime {max:?}"
    );
    eprintln!("{relay:?}: max lifetime {max:?} ended the tunnel {lived:?} after it was opened");
    assert!(closed_within(&mut client, Duration::from_secs(3)).await);
}

// ---------------------------------------------------------------------------------------------
// Every fd and pipe released

#[test]
fn thousand_tunnels_release_every_fd_and_pipe() {
    on_both_drivers("thousand_tunnels_release_every_fd_and_pipe", || async {
        thousand_tunnels(Relay::Splice).await;
        thousand_tunnels(Relay::Copy).await;
    });
}

async fn thousand_tunnels(relay: Relay) {
    const BATCH: usize = 100;
    const BATCHES: usize = 10;
    let proxy = Proxy::start(relay, TunnelLimits::default());
    settle().await;
    let before = fds();
    let mut peak = 0;
    for batch in 0..BATCHES {
        let mut open = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            open.push(proxy.open().await);
        }
        for (client, upstream) in open.iter_mut() {
            write_all(client, b"ping".to_vec()).await;
            assert_eq!(read_exact(upstream, 4).await, b"ping");
            write_all(upstream, b"pong".to_vec()).await;
            assert_eq!(read_exact(client, 4).await, b"pong");
        }
        let during = fds();
        let pipes = proxy.pool.idle() + proxy.pool.in_use();
        // 4 fds per tunnel: the test's client and backend ends, and the proxy's two sockets.
        assert!(
            during <= before + 4 * BATCH + 2 * pipes,
            "{relay:?}: {during} fds with {BATCH} tunnels open, {before} before, {pipes} pipes"
        );
        peak = peak.max(during);
        // Graceful close: the client leaves, the backend sees EOF and leaves too.
        for (client, mut upstream) in open {
            drop(client);
            assert!(read_to_end(&mut upstream).await.is_empty());
        }
        proxy.wait_ended((batch + 1) * BATCH).await;
    }
    settle().await;
    let after = fds();
    assert_eq!(
        proxy.pool.in_use(),
        0,
        "{relay:?}: pipes still lent after every tunnel ended"
    );
    assert!(proxy.pool.idle() <= 64);
    assert_eq!(
        after,
        before + 2 * proxy.pool.idle(),
        "{relay:?}: fd leak: {before} before, {after} after 1,000 tunnels, {} idle pipes",
        proxy.pool.idle()
    );
    for (_, stats) in proxy.ended.borrow().iter() {
        assert_both_closed(stats);
    }
    eprintln!(
        "{relay:?}: fds before {before}, peak with {BATCH} tunnels open {peak}, after \
         {} tunnels {after} (pool: {} idle pipes, {} created)",
        BATCH * BATCHES,
        proxy.pool.idle(),
        proxy.pool.created()
    );
}

// ---------------------------------------------------------------------------------------------
// Idle tunnels cost no pipe, no thread, two fds

#[test]
fn idle_tunnels_hold_no_pipe_and_add_no_thread() {
    on_both_drivers("idle_tunnels_hold_no_pipe_and_add_no_thread", || async {
        idle_tunnels(Relay::Splice).await;
        idle_tunnels(Relay::Copy).await;
    });
}

async fn idle_tunnels(relay: Relay) {
    const TUNNELS: usize = 200;
    let proxy = Proxy::start(relay, TunnelLimits::default());
    let mut open = Vec::with_capacity(TUNNELS);

    // The test's own two ends, measured without a proxy in between.
    settle().await;
    let heap_before_ends = heap_live();
    for _ in 0..TUNNELS {
        open.push(proxy.open_direct().await);
    }
    let ends_heap = heap_live() - heap_before_ends;
    open.clear();
    settle().await;

    let threads_before = threads();
    let fds_before = fds();
    let heap_before = heap_live();
    for _ in 0..TUNNELS {
        let (mut client, mut upstream) = proxy.open().await;
        // One byte each way, so every tunnel has borrowed (and returned) pipes.
        write_all(&mut client, vec![1]).await;
        read_exact(&mut upstream, 1).await;
        write_all(&mut upstream, vec![2]).await;
        read_exact(&mut client, 1).await;
        open.push((client, upstream));
    }
    monoio::time::sleep(Duration::from_millis(300)).await;

    let threads_idle = threads();
    let fds_idle = fds();
    let heap_idle = heap_live();
    assert_eq!(
        threads_idle, threads_before,
        "{relay:?}: {TUNNELS} idle tunnels changed the thread count"
    );
    assert_eq!(proxy.pool.in_use(), 0, "{relay:?}: an idle tunnel holds a pipe");
    let pool_fds = 2 * proxy.pool.idle();
    // The test's two ends take 2 fds per tunnel; the rest is the proxy's.
    let proxy_fds = fds_idle - fds_before - pool_fds - 2 * TUNNELS;
    assert_eq!(
        proxy_fds,
        2 * TUNNELS,
        "{relay:?}: proxy fds for {TUNNELS} idle tunnels"
    );
    let proxy_heap = (heap_idle - heap_before).saturating_sub(ends_heap) / TUNNELS;
    eprintln!(
        "{relay:?}: {TUNNELS} idle tunnels: threads {threads_before} → {threads_idle}; proxy fds \
         per tunnel {} (+{pool_fds} for pooled pipes per worker); proxy heap per tunnel \
         {proxy_heap} bytes (relay future {} bytes; test ends {} bytes per tunnel, excluded)",
        proxy_fds / TUNNELS,
        proxy.future_bytes.get(),
        ends_heap / TUNNELS,
    );
    if relay == Relay::Splice {
        assert_eq!(proxy.pool.armed_timers(), TUNNELS, "one shared-timer entry per tunnel");
        assert!(
            proxy_heap <= 2048,
            "an idle splice tunnel holds {proxy_heap} heap bytes in the proxy"
        );
    }
    for (client, mut upstream) in open {
        drop(client);
        assert!(read_to_end(&mut upstream).await.is_empty());
    }
    proxy.wait_ended(TUNNELS).await;
    assert_eq!(threads(), threads_before);
    assert_eq!(proxy.pool.armed_timers(), 0, "ended tunnels leave no timer entry");
}
