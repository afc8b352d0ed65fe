//! Zero-downtime restart: a running ringway hands its listening sockets to a successor over a
//! unix seqpacket socket (`[server] control_socket`), then drains. The successor accepts on the
//! very same sockets, so no connection waiting in an accept queue is lost (closing a
//! SO_REUSEPORT socket instead would reset them).
//!
//! Protocol, one text message per seqpacket, version 1 (new = successor, old = running):
//! ```text
//! new → old  TAKEOVER 1 pid=<new pid>
//! old → new  LISTENERS 1 pid=<old pid> workers=<W> count=<N>      (or ERROR <text>)
//! old → new  N × LISTENER <configured addr> <local addr>          + its sockets (SCM_RIGHTS)
//! old → new  END
//!            … new binds what is new, starts its workers, accepts on the sockets …
//! new → old  READY pid=<new pid>
//! old → new  DRAINING                      old stops accepting, finishes in-flight work, exits 0
//! ```
//! If the successor closes the connection before READY (bad config, bind error), nothing
//! changes in the running process.

use super::fdpass;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const VERSION: u32 = 1;
const MAX_MESSAGE: usize = 4096;
/// How long either side waits for the other's next message. The successor starts its workers
/// between END and READY, which takes milliseconds; a minute covers a loaded machine.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// One listener's sockets as they travel: every worker's socket, so every queue is kept.
pub struct Handed {
    /// The `bind` the old process was configured with (may have port 0).
    pub configured: SocketAddr,
    /// The address the sockets are bound to.
    pub local: SocketAddr,
    pub fds: Vec<OwnedFd>,
}

impl Handed {
    /// Whether a listener configured as `bind` is this one.
    pub fn serves(&self, bind: SocketAddr) -> bool {
        bind == self.local || (bind.port() == 0 && bind == self.configured)
    }
}

fn seqpacket() -> io::Result<Socket> {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    s.set_cloexec(true)?;
    Ok(s)
}

fn send_text(s: &Socket, text: &str, fds: &[OwnedFd]) -> io::Result<()> {
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    fdpass::send(s.as_fd(), text.as_bytes(), &borrowed)
}

fn recv_text(s: &Socket) -> io::Result<(String, Vec<OwnedFd>)> {
    let (data, fds) = fdpass::recv(s.as_fd(), MAX_MESSAGE)?;
    if data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the control connection",
        ));
    }
    let text = String::from_utf8(data).map_err(|_| bad("a message that is not text"))?;
    Ok((text, fds))
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("hand-over protocol: {what}"))
}

/// `key=value` from a message's fields.
fn field<'a>(fields: &[&'a str], key: &str) -> Option<&'a str> {
    fields.iter().find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

// ---------------------------------------------------------------------------------------------
// The running process.

/// What the running process offers its successor: duplicates of its listening sockets.
pub struct Offer {
    pub workers: usize,
    pub listeners: Vec<Handed>,
}

/// The offer, withdrawn (set to `None`, closing the duplicates) when the process stops: a
/// duplicate left open would keep a listening queue alive that nobody accepts from.
pub type SharedOffer = Arc<Mutex<Option<Offer>>>;

/// The bound control socket of a running ringway.
pub struct ControlSocket {
    sock: Socket,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` (mode 0600: the sockets it hands out are the service's ports). A leftover
    /// file from a process that died is replaced; a live ringway there is an error.
    pub fn bind(path: &Path) -> io::Result<ControlSocket> {
        match bind_at(path) {
            Ok(sock) => Ok(ControlSocket {
                sock,
                path: path.to_path_buf(),
            }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if seqpacket()?.connect(&SockAddr::unix(path)?).is_ok() {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "control socket {}: a running ringway serves it; replace that one with --takeover {}",
                            path.display(),
                            path.display()
                        ),
                    ));
                }
                // Only a socket file is ours to replace; anything else is the operator's.
                use std::os::unix::fs::FileTypeExt;
                if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "control socket {}: a file that is not a socket is in the way",
                            path.display()
                        ),
                    ));
                }
                std::fs::remove_file(path)?;
                Self::bind(path)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("control socket {}: {e}", path.display()),
            )),
        }
    }

    /// A successor binds beside the path and moves its socket over the old one's only when
    /// the hand-over succeeded: the path always names a live ringway.
    pub fn bind_beside(path: &Path) -> io::Result<ControlSocket> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let sock =
            bind_at(&tmp).map_err(|e| io::Error::new(e.kind(), format!("control socket {}: {e}", tmp.display())))?;
        Ok(ControlSocket { sock, path: tmp })
    }

    /// Renames the socket file to `path` (atomic: the old process's file is replaced).
    pub fn move_to(&mut self, path: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, path)?;
        self.path = path.to_path_buf();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves takeover requests on a thread of its own. After a successful hand-over it sends
    /// `taken_over(new pid)` and stops; failed attempts are logged and the process serves on.
    pub fn serve(self, offer: SharedOffer, taken_over: impl FnOnce(u32) + Send + 'static) -> io::Result<()> {
        std::thread::Builder::new()
            .name("ringway-control".into())
            .spawn(move || loop {
                let conn = match self.sock.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!(
                            "ringway: control socket {}: {e}; takeover is no longer possible",
                            self.path.display()
                        );
                        return;
                    }
                };
                match hand_over(&conn, &offer) {
                    Ok(pid) => {
                        offer.lock().unwrap_or_else(|p| p.into_inner()).take();
                        eprintln!("ringway: pid {pid} took over the listeners; draining");
                        taken_over(pid);
                        return;
                    }
                    Err(e) => eprintln!("ringway: takeover attempt failed, still serving: {e}"),
                }
            })?;
        Ok(())
    }
}

fn bind_at(path: &Path) -> io::Result<Socket> {
    use std::os::unix::fs::PermissionsExt;
    let s = seqpacket()?;
    s.bind(&SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    s.listen(4)?;
    Ok(s)
}

/// The running side of one takeover conversation; returns the successor's pid once it is
/// serving and this process must drain.
fn hand_over(conn: &Socket, offer: &SharedOffer) -> io::Result<u32> {
    conn.set_read_timeout(Some(PEER_TIMEOUT))?;
    conn.set_write_timeout(Some(PEER_TIMEOUT))?;
    let (hello, _) = recv_text(conn)?;
    let fields: Vec<&str> = hello.split(' ').collect();
    if fields.first() != Some(&"TAKEOVER") {
        return Err(bad(format!("expected TAKEOVER, got {hello:?}")));
    }
    if fields.get(1) != Some(&"1") {
        let _ = send_text(conn, &format!("ERROR protocol version {VERSION} only"), &[]);
        return Err(bad(format!("unsupported request {hello:?}")));
    }
    // Duplicates taken under the lock, sent without it.
    let (workers, listeners) = {
        let guard = offer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(o) = guard.as_ref() else {
            let _ = send_text(conn, "ERROR this ringway is stopping", &[]);
            return Err(bad("asked while stopping"));
        };
        let mut ls = Vec::new();
        for l in &o.listeners {
            let fds: Vec<OwnedFd> = l.fds.iter().map(|f| f.try_clone()).collect::<io::Result<_>>()?;
            ls.push(Handed {
                configured: l.configured,
                local: l.local,
                fds,
            });
        }
        (o.workers, ls)
    };
    send_text(
        conn,
        &format!(
            "LISTENERS {VERSION} pid={} workers={workers} count={}",
            std::process::id(),
            listeners.len()
        ),
        &[],
    )?;
    for l in &listeners {
        for chunk in l.fds.chunks(fdpass::MAX_FDS) {
            let dup: Vec<OwnedFd> = chunk.iter().map(|f| f.try_clone()).collect::<io::Result<_>>()?;
            send_text(conn, &format!("LISTENER {} {}", l.configured, l.local), &dup)?;
        }
    }
    drop(listeners);
    send_text(conn, "END", &[])?;
    let (ready, _) = recv_text(conn)?;
    let fields: Vec<&str> = ready.split(' ').collect();
    if fields.first() != Some(&"READY") {
        return Err(bad(format!("expected READY, got {ready:?}")));
    }
    let pid = field(&fields, "pid").and_then(|p| p.parse().ok()).unwrap_or(0);
    send_text(conn, "DRAINING", &[])?;
    Ok(pid)
}

// ---------------------------------------------------------------------------------------------
// The successor.

/// An open takeover: the old process's sockets are here; it keeps serving until [`finish`].
///
/// [`finish`]: Takeover::finish
pub struct Takeover {
    conn: Socket,
    pub old_pid: u32,
    pub old_workers: usize,
    pub listeners: Vec<Handed>,
}

impl Takeover {
    /// Connects to the running ringway at `path` and receives its listening sockets.
    pub fn start(path: &Path) -> io::Result<Takeover> {
        let conn = seqpacket()?;
        conn.connect(&SockAddr::unix(path)?).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "takeover: no ringway answers on {} ({e}); start without --takeover",
                    path.display()
                ),
            )
        })?;
        conn.set_read_timeout(Some(PEER_TIMEOUT))?;
        conn.set_write_timeout(Some(PEER_TIMEOUT))?;
        let fail = |e: io::Error| io::Error::new(e.kind(), format!("takeover via {}: {e}", path.display()));
        send_text(&conn, &format!("TAKEOVER {VERSION} pid={}", std::process::id()), &[]).map_err(fail)?;
        let (head, _) = recv_text(&conn).map_err(fail)?;
        if let Some(why) = head.strip_prefix("ERROR ") {
            return Err(fail(bad(format!("the running ringway refused: {why}"))));
        }
        let fields: Vec<&str> = head.split(' ').collect();
        if fields.first() != Some(&"LISTENERS") || fields.get(1) != Some(&"1") {
            return Err(fail(bad(format!("unexpected answer {head:?}"))));
        }
        let number = |k| field(&fields, k).and_then(|v| v.parse::<usize>().ok());
        let (Some(pid), Some(workers)) = (number("pid"), number("workers")) else {
            return Err(fail(bad(format!("incomplete answer {head:?}"))));
        };
        let mut listeners: Vec<Handed> = Vec::new();
        loop {
            let (msg, fds) = recv_text(&conn).map_err(fail)?;
            if msg == "END" {
                break;
            }
            let parts: Vec<&str> = msg.split(' ').collect();
            let (configured, local) = match parts.as_slice() {
                ["LISTENER", c, l] => match (c.parse(), l.parse()) {
                    (Ok(c), Ok(l)) => (c, l),
                    _ => return Err(fail(bad(format!("bad listener {msg:?}")))),
                },
                _ => return Err(fail(bad(format!("unexpected message {msg:?}")))),
            };
            for fd in &fds {
                let actual = socket2::SockRef::from(fd).local_addr()?.as_socket();
                if actual != Some(local) {
                    return Err(fail(bad(format!("a socket for {local} is bound to {actual:?}"))));
                }
            }
            match listeners.iter_mut().find(|h| h.local == local) {
                Some(h) => h.fds.extend(fds),
                None => listeners.push(Handed { configured, local, fds }),
            }
        }
        Ok(Takeover {
            conn,
            old_pid: pid as u32,
            old_workers: workers,
            listeners,
        })
    }

    /// Tells the old process this one is serving; it answers DRAINING and stops accepting.
    pub fn finish(self) -> io::Result<()> {
        send_text(&self.conn, &format!("READY pid={}", std::process::id()), &[])?;
        let (answer, _) = recv_text(&self.conn)?;
        if answer != "DRAINING" {
            return Err(bad(format!("expected DRAINING, got {answer:?}")));
        }
        Ok(())
    }
}

/// Hands out each listener's sockets to the successor's workers: the inherited ones first
/// (round robin, so a smaller worker count still accepts on every inherited queue), then fresh
/// SO_REUSEPORT sockets for workers that got none. Returns `sockets[worker]`.
pub fn spread(inherited: Vec<std::net::TcpListener>, workers: usize) -> Vec<Vec<std::net::TcpListener>> {
    let mut out: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, s) in inherited.into_iter().enumerate() {
        out[i % workers].push(s);
    }
    out
}
