//! The TLS layer over real sockets on 127.0.0.1, with certificates made by rcgen at test time.
//! Our side runs in a monoio runtime (io_uring, or epoll with `MONOIO_FORCE_LEGACY_DRIVER=1`); the
//! peer is a blocking rustls client or server on its own thread.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use ringway::tls::{CertPair, ServerTls, TlsError, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme};

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const BOTH: &[&rustls::SupportedProtocolVersion] = rustls::ALL_VERSIONS;
const H11: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";
const HANDSHAKE: Duration = Duration::from_secs(5);

// ---- server side: ServerTls against a blocking rustls client ----

#[test]
fn sni_picks_exact_wildcard_and_default() {
    let dir = TempDir::new("sni");
    let ca = Ca::new("sni test CA");
    // Three key types: ECDSA (SEC1 file), RSA (PKCS#1 file), Ed25519 (PKCS#8 from rcgen).
    let com = dir.pair(
        "com",
        &ca.leaf(&["example.com", "www.example.com"], fixture_key("p256.pkcs8.pem")),
    );
    std::fs::copy(fixture_path("p256.sec1.pem"), &com.key).unwrap();
    let org = dir.pair("org", &ca.leaf(&["*.example.org"], fixture_key("rsa2048.pkcs8.pem")));
    std::fs::copy(fixture_path("rsa2048.pkcs1.pem"), &org.key).unwrap();
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let net = dir.pair("net", &ca.leaf(&["ed.example.net"], ed));
    let (tls, warnings) = ServerTls::load(&[com.clone(), org.clone(), net.clone()]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");

    let cases = [
        ("example.com", true, &com),
        ("www.example.com", true, &com),
        ("app.example.org", true, &org),
        ("APP.Example.Org", true, &org),
        ("ed.example.net", true, &net),
        ("a.b.example.org", true, &com),
        ("example.org", true, &com),
        ("unknown.test", true, &com),
        ("example.org", false, &com), // no SNI at all
    ];
    let expected: Vec<Vec<u8>> = cases.iter().map(|(_, _, p)| first_cert(&p.cert)).collect();
    let clients = cases.iter().map(|&(name, sni, _)| (name, sni)).collect::<Vec<_>>();
    let (seen, served) = serve_clients(tls, clients.len(), HANDSHAKE, move |addr| {
        clients
            .iter()
            .map(|&(name, sni)| {
                let mut config = test_client_config(BOTH, &[H11]);
                config.enable_sni = sni;
                client_exchange(addr, config, name).unwrap()
            })
            .collect::<Vec<_>>()
    });
    for ((case, want), got) in cases.iter().zip(&expected).zip(&seen) {
        assert!(got.cert == *want, "{:?}: wrong certificate", (case.0, case.1));
        assert_eq!(got.chain_len, 2, "the whole chain (leaf, CA) is sent");
        assert_eq!(got.echo, b"ping");
    }
    assert!(served.iter().all(Result::is_ok), "{served:?}");
}

#[test]
fn tls12_and_tls13_handshakes_with_http11_alpn() {
    let dir = TempDir::new("versions");
    let ca = Ca::new("versions CA");
    let pair = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let (tls, _) = ServerTls::load(&[pair]).unwrap();
    let (seen, served) = serve_clients(tls, 3, HANDSHAKE, |addr| {
        [
            (TLS12, &[H11][..]),
            (TLS13, &[H2, H11]),
            (BOTH, &[]), // a client without ALPN is still served
        ]
        .into_iter()
        .map(|(versions, alpn)| client_exchange(addr, test_client_config(versions, alpn), "localhost").unwrap())
        .collect::<Vec<_>>()
    });
    assert_eq!(seen[0].version, Some(ProtocolVersion::TLSv1_2));
    assert_eq!(seen[1].version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(seen[2].version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(seen[0].alpn.as_deref(), Some(H11));
    assert_eq!(seen[1].alpn.as_deref(), Some(H11));
    assert_eq!(seen[2].alpn, None);
    let alpn: Vec<_> = served.into_iter().map(|s| s.unwrap().alpn).collect();
    assert_eq!(alpn, [Some(H11.to_vec()), Some(H11.to_vec()), None]);
}

#[test]
fn stalled_handshakes_are_dropped_at_the_deadline_without_blocking_others() {
    let dir = TempDir::new("timeout");
    let ca = Ca::new("timeout CA");
    let pair = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let (tls, _) = ServerTls::load(&[pair]).unwrap();
    let deadline = Duration::from_millis(1000);
    let (client, served) = serve_clients(tls, 3, deadline, |addr| {
        let start = Instant::now();
        // One client sends nothing, one stops after the first bytes of a ClientHello record.
        let silent = std::net::TcpStream::connect(addr).unwrap();
        let mut partial = std::net::TcpStream::connect(addr).unwrap();
        partial.write_all(&[0x16, 0x03, 0x01]).unwrap();
        // A normal client is served meanwhile.
        let ok = client_exchange(addr, test_client_config(BOTH, &[]), "localhost");
        let ok_after = start.elapsed();
        let closed = [silent, partial].map(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let r = s.read(&mut [0u8; 64]);
            (r.map_err(|e| e.kind()), start.elapsed())
        });
        (ok.map(|s| s.echo), ok_after, closed)
    });
    let (ok, ok_after, closed) = client;
    assert_eq!(ok.unwrap(), b"ping");
    assert!(
        ok_after < deadline,
        "the good client waited for the stalled ones: {ok_after:?}"
    );
    for (result, at) in closed {
        // The server closes the socket: EOF, or a reset if unread bytes were pending.
        assert!(
            matches!(result, Ok(0) | Err(io::ErrorKind::ConnectionReset)),
            "{result:?}"
        );
        assert!(at >= deadline && at < Duration::from_secs(4), "closed after {at:?}");
    }
    let kinds: Vec<_> = served
        .iter()
        .map(|r| r.as_ref().map(|_| ()).map_err(io::Error::kind))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == Err(io::ErrorKind::TimedOut)).count(),
        2,
        "{served:?}"
    );
    assert_eq!(kinds.iter().filter(|k| k.is_ok()).count(), 1, "{served:?}");
}

#[test]
fn plaintext_client_gets_a_handshake_error() {
    let dir = TempDir::new("plaintext");
    let ca = Ca::new("plaintext CA");
    let pair = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let (tls, _) = ServerTls::load(&[pair]).unwrap();
    let (_, served) = serve_clients(tls, 1, HANDSHAKE, |addr| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read(&mut [0u8; 256]);
    });
    let err = served.into_iter().next().unwrap().unwrap_err();
    assert_ne!(err.kind(), io::ErrorKind::TimedOut, "{err}");
}

// Regressions for the monoio-rustls 0.4 panics (monoio-rs/monoio-tls#11) that made us write our
// own stream: a read cancelled by a timeout must leave the stream usable. (The concurrent-relay
// case runs through the binary: `corrupt_record_during_a_blocked_wss_write_keeps_the_worker`.)

#[test]
fn a_stream_is_usable_after_a_cancelled_read() {
    let (tls, _dir) = one_cert_server("cancel");
    serve_raw(tls, |mut tls| {
        Box::pin(async move {
            let idle = monoio::time::timeout(Duration::from_millis(100), tls.read(Vec::with_capacity(64)));
            assert!(idle.await.is_err(), "the client sends nothing more");
            // The next record is corrupt: an error, not a panic.
            let (res, _) = tls.read(Vec::with_capacity(64)).await;
            let err = res.expect_err("a corrupt record is an error");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        })
    });
}

/// One handshake, then `then` with the stream; the client sends "ping", waits 300 ms, sends a
/// corrupt application-data record and lingers.
fn serve_raw(
    tls: ServerTls,
    then: impl FnOnce(ringway::tls::ServerStream) -> std::pin::Pin<Box<dyn Future<Output = ()>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let config = Arc::new(test_client_config(BOTH, &[]));
        let mut tls = rustls::StreamOwned::new(rustls::ClientConnection::new(config, name).unwrap(), sock);
        tls.write_all(b"ping").unwrap();
        thread::sleep(Duration::from_millis(300));
        let _ = tls
            .sock
            .write_all(&[&[0x17, 0x03, 0x03, 0x00, 0x20][..], &[0x55; 32]].concat());
        thread::sleep(Duration::from_secs(2));
    });
    block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = tls.accept(tcp, HANDSHAKE).await.unwrap();
        let (n, _) = stream.read(Vec::with_capacity(64)).await;
        assert_eq!(n.unwrap(), 4);
        then(stream).await;
    });
}

fn one_cert_server(tag: &str) -> (ServerTls, TempDir) {
    let dir = TempDir::new(tag);
    let pair = dir.pair(
        "site",
        &Ca::new("CA").leaf(&["localhost"], KeyPair::generate().unwrap()),
    );
    (ServerTls::load(&[pair]).unwrap().0, dir)
}

// ---- loading: errors name the file, expiry is a warning ----

#[test]
fn load_errors_name_the_file() {
    let dir = TempDir::new("errors");
    let ca = Ca::new("errors CA");
    let a = dir.pair("a", &ca.leaf(&["a.test"], KeyPair::generate().unwrap()));
    let b = dir.pair("b", &ca.leaf(&["b.test"], KeyPair::generate().unwrap()));
    let missing = dir.path("missing.pem");
    let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let encrypted = dir.write(
        "enc.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let legacy = dir.write(
        "legacy.key",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n\
         AAAA\n-----END RSA PRIVATE KEY-----\n",
    );
    let pair = |cert: &Path, key: &Path| CertPair {
        cert: cert.to_owned(),
        key: key.to_owned(),
    };

    let cases: Vec<(CertPair, &Path, &str)> = vec![
        (pair(&a.cert, &b.key), &b.key, "does not match the certificate in"),
        (pair(&missing, &a.key), &missing, "cannot read"),
        (pair(&a.cert, &missing), &missing, "cannot read"),
        (pair(&a.key, &a.key), &a.key, "no certificate found"),
        (pair(&a.cert, &a.cert), &a.cert, "no private key found"),
        (pair(&a.cert, &encrypted), &encrypted, "encrypted"),
        (pair(&a.cert, &legacy), &legacy, "encrypted"),
        (
            pair(&garbage, &a.key),
            &garbage,
            "missing \"-----END CERTIFICATE-----\"",
        ),
    ];
    for (pair, file, words) in cases {
        // The good pair first: an error in any later pair still fails the whole listener.
        let err = ServerTls::load(&[a.clone(), pair.clone()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&file.display().to_string()), "{pair:?}: {text}");
        assert!(text.contains(words), "{pair:?}: {text}");
    }
    assert!(matches!(ServerTls::load(&[]), Err(TlsError::NoCertificates)));
    assert!(matches!(
        ServerTls::load(&[pair(&a.cert, &b.key)]),
        Err(TlsError::KeyMismatch { .. })
    ));
}

#[test]
fn expired_and_nameless_certificates_are_warnings() {
    let dir = TempDir::new("expired");
    let ca = Ca::new("expired CA");
    let mut params = CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let old = dir.pair("old", &ca.sign(params, KeyPair::generate().unwrap()));
    let nameless = dir.pair("nameless", &ca.leaf(&[], KeyPair::generate().unwrap()));

    let (_, warnings) = ServerTls::load(&[old.clone(), nameless.clone()]).unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains(&old.cert.display().to_string()), "{warnings:?}");
    assert!(warnings[0].contains("old.test"), "{warnings:?}");
    assert!(
        warnings[0].contains("expired on 2020-01-01 00:00:00 UTC"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains(&nameless.cert.display().to_string()),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("never chosen"), "{warnings:?}");
}

// ---- client side: UpstreamTls against a blocking rustls server ----

#[test]
fn upstream_verified_by_test_ca() {
    let dir = TempDir::new("upstream-ok");
    let ca = Ca::new("upstream CA");
    let site = dir.pair(
        "site",
        &ca.leaf(&["localhost", "127.0.0.1"], KeyPair::generate().unwrap()),
    );
    let ca_file = dir.write("ca.pem", &ca.cert.pem());
    let upstream = UpstreamTls::new(Some(&ca_file), false).unwrap();
    let addr = upstream_server(&site, TLS12, 1);
    assert_eq!(
        block_on(upstream_exchange(&upstream, addr, "localhost")).unwrap(),
        "http/1.1"
    );
    let addr = upstream_server(&site, BOTH, 1);
    assert_eq!(
        block_on(upstream_exchange(&upstream, addr, "127.0.0.1")).unwrap(),
        "http/1.1"
    );
}

#[test]
fn upstream_verification_failures_say_why() {
    let dir = TempDir::new("upstream-bad");
    let ca = Ca::new("upstream CA");
    let other_ca = Ca::new("some other CA");
    let site = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let good_ca = dir.write("ca.pem", &ca.cert.pem());
    let wrong_ca = dir.write("other-ca.pem", &other_ca.cert.pem());

    let wrong = UpstreamTls::new(Some(&wrong_ca), false).unwrap();
    let addr = upstream_server(&site, BOTH, 1);
    let err = block_on(upstream_exchange(&wrong, addr, "localhost")).unwrap_err();
    assert!(err.to_string().contains("upstream localhost"), "{err}");
    assert!(err.to_string().contains("not signed by a trusted CA"), "{err}");

    let good = UpstreamTls::new(Some(&good_ca), false).unwrap();
    let addr = upstream_server(&site, BOTH, 1);
    let err = block_on(upstream_exchange(&good, addr, "wrong.example")).unwrap_err();
    assert!(err.to_string().contains("upstream wrong.example"), "{err}");
    assert!(
        err.to_string().contains("not valid for name \"wrong.example\""),
        "{err}"
    );
    assert!(err.to_string().contains("localhost"), "{err}");

    match UpstreamTls::new(None, false) {
        Ok(system) => {
            let addr = upstream_server(&site, BOTH, 1);
            let err = block_on(upstream_exchange(&system, addr, "localhost")).unwrap_err();
            assert!(err.to_string().contains("not signed by a trusted CA"), "{err}");
        }
        Err(e @ TlsError::NoSystemRoots { .. }) => eprintln!("skipping system roots: {e}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn upstream_insecure_skips_verification() {
    let dir = TempDir::new("upstream-insecure");
    let ca = Ca::new("unknown CA");
    let site = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let insecure = UpstreamTls::new(None, true).unwrap();
    let addr = upstream_server(&site, BOTH, 1);
    assert_eq!(
        block_on(upstream_exchange(&insecure, addr, "wrong.example")).unwrap(),
        "http/1.1"
    );
}

#[test]
fn upstream_ca_file_errors_name_the_file() {
    let dir = TempDir::new("upstream-ca");
    let missing = dir.path("missing-ca.pem");
    let empty = dir.write("empty.pem", "");
    for (file, words) in [(&missing, "cannot read"), (&empty, "no certificate found")] {
        let err = UpstreamTls::new(Some(file), false).unwrap_err().to_string();
        assert!(
            err.contains(&file.display().to_string()) && err.contains(words),
            "{err}"
        );
    }
}

// ---- helpers ----

fn block_on<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(future)
}

/// What the server side saw of one connection.
#[derive(Debug)]
struct Served {
    alpn: Option<Vec<u8>>,
}

/// Runs `client` on a thread against a listener that accepts `conns` connections, each handled in
/// its own task as the proxy will: TLS handshake, then echo one read back.
fn serve_clients<T: Send + 'static>(
    tls: ServerTls,
    conns: usize,
    timeout: Duration,
    client: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> (T, Vec<io::Result<Served>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let client = thread::spawn(move || client(addr));
    let served = block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            tasks.push(monoio::spawn(async move {
                let mut stream = tls.accept(tcp, timeout).await?;
                let alpn = stream.alpn_protocol();
                let (n, buf) = stream.read(Vec::with_capacity(1024)).await;
                if n? > 0 {
                    let (r, _) = stream.write_all(buf).await;
                    r?;
                }
                let _ = stream.shutdown().await; // the client may already be gone
                Ok(Served { alpn })
            }));
        }
        let mut served = Vec::new();
        for task in tasks {
            served.push(task.await);
        }
        served
    });
    (client.join().unwrap(), served)
}

/// What a client saw: the leaf certificate, version, ALPN and the echo of "ping".
struct Seen {
    cert: Vec<u8>,
    chain_len: usize,
    version: Option<ProtocolVersion>,
    alpn: Option<Vec<u8>>,
    echo: Vec<u8>,
}

fn client_exchange(addr: SocketAddr, config: ClientConfig, name: &str) -> io::Result<Seen> {
    let sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(HANDSHAKE))?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"ping")?;
    let mut echo = vec![0; 4];
    tls.read_exact(&mut echo)?;
    Ok(Seen {
        cert: tls.conn.peer_certificates().unwrap()[0].to_vec(),
        chain_len: tls.conn.peer_certificates().unwrap().len(),
        version: tls.conn.protocol_version(),
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
        echo,
    })
}

/// Connects through `UpstreamTls`, checks the echo and returns the negotiated ALPN.
async fn upstream_exchange(up: &UpstreamTls, addr: SocketAddr, name: &str) -> io::Result<String> {
    let tcp = monoio::net::TcpStream::connect(addr).await?;
    let mut stream = up.connect(tcp, name).await?;
    let (r, _) = stream.write_all(b"ping".to_vec()).await;
    r?;
    let (n, buf) = stream.read(Vec::with_capacity(64)).await;
    assert_eq!(&buf[..n?], b"ping");
    let _ = stream.shutdown().await; // the server may already be gone
    Ok(String::from_utf8(stream.alpn_protocol().unwrap_or_default()).unwrap())
}

/// A blocking rustls server for `conns` connections: handshake, echo one read, close.
fn upstream_server(
    pair: &CertPair,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    conns: usize,
) -> SocketAddr {
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for _ in 0..conns {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(HANDSHAKE)).unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 4];
            if tls.read_exact(&mut buf).is_ok() {
                let _ = tls.write_all(&buf);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    addr
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that accepts any certificate, so the test can look at which one it was given.
fn test_client_config(versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// PEM texts of a leaf certificate chain (leaf, then the CA) and its key.
struct Leaf {
    chain: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    fn leaf(&self, names: &[&str], key: KeyPair) -> Leaf {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        self.sign(CertificateParams::new(names).unwrap(), key)
    }

    fn sign(&self, params: CertificateParams, key: KeyPair) -> Leaf {
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain: cert.pem() + &self.cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls_keys").join(name)
}

fn fixture_key(name: &str) -> KeyPair {
    KeyPair::from_pem(&std::fs::read_to_string(fixture_path(name)).unwrap()).unwrap()
}

fn first_cert(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// A directory under the system temp dir, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringway-tls-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn pair(&self, name: &str, leaf: &Leaf) -> CertPair {
        CertPair {
            cert: self.write(&format!("{name}.pem"), &leaf.chain),
            key: self.write(&format!("{name}.key"), &leaf.key),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- end to end, through the built binary ----

#[path = "common/mod.rs"]
mod common;

/// A backend that answers every request with the request head it received as the body.
fn head_echo_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for sock in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || serve_head_echo(sock));
        }
    });
    addr
}

fn serve_head_echo<S: Read + Write>(mut sock: S) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match sock.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len());
        if sock.write_all(reply.as_bytes()).is_err() || sock.write_all(&head).is_err() {
            return;
        }
        let _ = sock.flush();
    }
}

fn proxy_config(listeners: &str, upstream: &str) -> String {
    format!("[server]\nworkers = 1\nheader_timeout = \"1s\"\n{listeners}\n{upstream}\n[[route]]\nupstream = \"app\"\n")
}

fn toml_path(p: &Path) -> String {
    p.display().to_string()
}

/// A TLS client request to `addr`: returns the leaf certificate and the whole response text.
fn tls_get(addr: SocketAddr, sni: &str, path: &str) -> (Vec<u8>, String) {
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(HANDSHAKE)).unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let config = Arc::new(test_client_config(BOTH, &[H11]));
    let mut tls = rustls::StreamOwned::new(rustls::ClientConnection::new(config, name).unwrap(), sock);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let cert = tls.conn.peer_certificates().unwrap()[0].to_vec();
    (cert, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn e2e_sni_default_forwarded_proto_port_and_hsts() {
    let dir = TempDir::new("e2e-sni");
    let ca = Ca::new("e2e CA");
    let a = dir.pair("a", &ca.leaf(&["a.test"], KeyPair::generate().unwrap()));
    let b = dir.pair("b", &ca.leaf(&["*.b.test"], KeyPair::generate().unwrap()));
    let listeners = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nhsts = \"max-age=60\"\n\
         [[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n",
        toml_path(&a.cert),
        toml_path(&a.key),
        toml_path(&b.cert),
        toml_path(&b.key)
    );
    let proxy = common::Ringway::start(&proxy_config(&listeners, &common::upstream("app", head_echo_backend())));
    let port = proxy.addr().port();
    for (sni, expect) in [("a.test", &a), ("x.b.test", &b), ("other.test", &a)] {
        let (cert, resp) = tls_get(proxy.addr(), sni, "/p?q=1");
        assert_eq!(cert, first_cert(&expect.cert), "certificate for {sni}");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("X-Forwarded-Proto: https\r\n"), "{resp}");
        assert!(resp.contains(&format!("X-Forwarded-Port: {port}\r\n")), "{resp}");
        assert!(resp.contains("Strict-Transport-Security: max-age=60\r\n"), "{resp}");
        assert!(resp.contains("GET /p?q=1 HTTP/1.1"), "{resp}");
    }
}

#[test]
fn e2e_redirect_https_is_a_308_to_the_same_path_and_query() {
    let listeners = "[[listener]]\nbind = \"127.0.0.1:0\"\nredirect_https = \"https://example.com:8443\"\n";
    let proxy = common::Ringway::start(&proxy_config(listeners, &common::upstream("app", head_echo_backend())));
    let mut sock = std::net::TcpStream::connect(proxy.addr()).unwrap();
    sock.set_read_timeout(Some(HANDSHAKE)).unwrap();
    sock.write_all(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = sock.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    assert!(
        out.contains("Location: https://example.com:8443/a/b?x=1&y=2\r\n"),
        "{out}"
    );
}

/// A TLS server (blocking rustls) on an ephemeral loopback port, `pair` as its certificate; each
/// connection is handed, decrypted, to `serve` on its own thread.
fn tls_backend(pair: &CertPair, serve: fn(TlsServerStream)) -> SocketAddr {
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(BOTH)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for sock in listener.incoming().map_while(Result::ok) {
            let config = config.clone();
            thread::spawn(move || {
                serve(rustls::StreamOwned::new(
                    rustls::ServerConnection::new(config).unwrap(),
                    sock,
                ))
            });
        }
    });
    addr
}

type TlsServerStream = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

/// An HTTPS backend that echoes request heads, like `head_echo_backend`.
fn https_head_echo_backend(pair: &CertPair) -> SocketAddr {
    tls_backend(pair, serve_head_echo)
}

fn plain_get(addr: SocketAddr, path: &str) -> String {
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(HANDSHAKE)).unwrap();
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = sock.read_to_string(&mut out);
    out
}

#[test]
fn e2e_https_upstream_verified_by_test_ca_and_failure_is_a_502() {
    let dir = TempDir::new("e2e-up");
    let ca = Ca::new("upstream CA");
    let other = Ca::new("other CA");
    let site = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let good_ca = dir.write("ca.pem", &ca.cert.pem());
    let wrong_ca = dir.write("wrong.pem", &other.cert.pem());
    let backend = https_head_echo_backend(&site);
    let listeners = "[[listener]]\nbind = \"127.0.0.1:0\"\n";
    let up = |ca: &Path| {
        format!(
            "[upstream.app]\nservers = [\"https://localhost:{}\"]\nca = \"{}\"\n",
            backend.port(),
            toml_path(ca)
        )
    };
    let proxy = common::Ringway::start(&proxy_config(listeners, &up(&good_ca)));
    for _ in 0..3 {
        let resp = plain_get(proxy.addr(), "/hello");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("GET /hello HTTP/1.1"), "{resp}");
    }

    let proxy = common::Ringway::start(&proxy_config(listeners, &up(&wrong_ca)));
    let resp = plain_get(proxy.addr(), "/hello");
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(resp.contains("not signed by a trusted CA"), "{resp}");
    thread::sleep(Duration::from_millis(100));
    assert!(
        proxy.stderr().contains("not signed by a trusted CA"),
        "{}",
        proxy.stderr()
    );
}

fn wss_listener(dir: &TempDir) -> String {
    let pair = dir.pair(
        "wss",
        &Ca::new("wss CA").leaf(&["localhost"], KeyPair::generate().unwrap()),
    );
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n",
        toml_path(&pair.cert),
        toml_path(&pair.key)
    )
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn tls_connect(addr: SocketAddr) -> TlsClient {
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let config = Arc::new(test_client_config(BOTH, &[H11]));
    let name = ServerName::try_from("localhost").unwrap();
    rustls::StreamOwned::new(rustls::ClientConnection::new(config, name).unwrap(), sock)
}

#[test]
fn e2e_wss_echo_with_a_1mb_message() {
    let dir = TempDir::new("e2e-wss");
    let proxy = common::Ringway::start(&proxy_config(
        &wss_listener(&dir),
        &common::upstream("app", common::ws_echo_server()),
    ));
    let url = format!("wss://localhost:{}/ws", proxy.addr().port());
    let (mut ws, resp) = tungstenite::client(url, tls_connect(proxy.addr())).expect("wss handshake");
    assert_eq!(resp.status(), 101);
    let big = common::pattern(1 << 20, 42);
    for _ in 0..2 {
        ws.send(tungstenite::Message::binary(big.clone())).unwrap();
        match ws.read().unwrap() {
            tungstenite::Message::Binary(got) => assert!(got[..] == big[..], "echo differs"),
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.send(tungstenite::Message::text("small")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("small"));
    ws.close(None).unwrap();
}

#[test]
fn e2e_stalled_handshake_is_dropped_and_others_are_served() {
    let dir = TempDir::new("e2e-stall");
    let proxy = common::Ringway::start(&proxy_config(
        &wss_listener(&dir),
        &common::upstream("app", head_echo_backend()),
    ));
    let started = Instant::now();
    let mut stalled = std::net::TcpStream::connect(proxy.addr()).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap(); // half a ClientHello
    let (_, resp) = tls_get(proxy.addr(), "localhost", "/meanwhile");
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "served while another client stalls: {resp}"
    );
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(stalled.read(&mut buf), Ok(0) | Err(_));
    let waited = started.elapsed();
    assert!(closed, "the stalled client is closed");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

/// An upstream that answers the upgrade with 101 and then floods the tunnel until it breaks.
fn flooding_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut sock in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sock.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = sock.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                let chunk = vec![b'f'; 64 * 1024];
                while sock.write_all(&chunk).is_ok() {}
            });
        }
    });
    addr
}

#[test]
fn e2e_corrupt_record_during_a_blocked_wss_write_keeps_the_worker() {
    let dir = TempDir::new("e2e-corrupt");
    let mut proxy = common::Ringway::start(&proxy_config(
        &wss_listener(&dir),
        &common::upstream("app", flooding_upstream()),
    ));
    let mut tls = tls_connect(proxy.addr());
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut first = [0u8; 12];
    tls.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 101");
    // Stop reading: the proxy's writes to us block; then a corrupt record arrives.
    thread::sleep(Duration::from_millis(500));
    tls.sock
        .write_all(&[&[0x17, 0x03, 0x03, 0x00, 0x20][..], &[0x55; 32]].concat())
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    proxy.assert_healthy();
    // The worker still serves (one worker: the same one).
    let mut other = tls_connect(proxy.addr());
    other
        .write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    other.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(tls);
    drop(other);
    proxy.assert_healthy();
}

#[test]
fn e2e_check_warns_on_expired_certificates_and_skipped_verification_and_errors_name_the_file() {
    let dir = TempDir::new("e2e-check");
    let ca = Ca::new("check CA");
    let mut params = CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let old = dir.pair("old", &ca.sign(params, KeyPair::generate().unwrap()));
    let config = |cert: &Path| {
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [upstream.app]\nservers = [\"https://localhost:9\"]\ninsecure_skip_verify = true\n\
             [[route]]\nupstream = \"app\"\n",
            toml_path(cert),
            toml_path(&old.key)
        )
    };
    let file = dir.write("ok.toml", &config(&old.cert));
    let out = common::run_cli(&["check", "--config", file.to_str().unwrap()]);
    let stderr = common::stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("expired on 2020-01-01"),
        "{stderr}"
    );
    assert!(
        stderr.contains("insecure_skip_verify") && stderr.contains("NOT verified"),
        "{stderr}"
    );

    let missing = dir.path("missing.pem");
    let file = dir.write("bad.toml", &config(&missing));
    let out = common::run_cli(&["check", "--config", file.to_str().unwrap()]);
    let stderr = common::stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    let out = common::run_cli(&["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "run exits 2 too");
}

/// A WebSocket echo server behind TLS (an `https://` upstream that upgrades).
fn wss_echo_upstream(pair: &CertPair) -> SocketAddr {
    tls_backend(pair, common::ws_echo)
}

#[test]
fn e2e_ws_through_to_an_https_upstream() {
    let dir = TempDir::new("e2e-ws-up");
    let ca = Ca::new("ws upstream CA");
    let site = dir.pair("site", &ca.leaf(&["localhost"], KeyPair::generate().unwrap()));
    let ca_file = dir.write("ca.pem", &ca.cert.pem());
    let backend = wss_echo_upstream(&site);
    let upstream = format!(
        "[upstream.app]\nservers = [\"https://localhost:{}\"]\nca = \"{}\"\n",
        backend.port(),
        toml_path(&ca_file)
    );
    // Plain client → TLS upstream, and TLS client → TLS upstream.
    let listeners = format!("[[listener]]\nbind = \"127.0.0.1:0\"\n{}", wss_listener(&dir));
    let proxy = common::Ringway::start(&proxy_config(&listeners, &upstream));
    let big = common::pattern(256 * 1024, 7);
    let sock = std::net::TcpStream::connect(proxy.addrs[0]).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://localhost:{}/ws", proxy.addrs[0].port()), sock).unwrap();
    ws.send(tungstenite::Message::binary(big.clone())).unwrap();
    assert!(ws.read().unwrap().into_data()[..] == big[..]);
    let url = format!("wss://localhost:{}/ws", proxy.addrs[1].port());
    let (mut ws, _) = tungstenite::client(url, tls_connect(proxy.addrs[1])).unwrap();
    ws.send(tungstenite::Message::binary(big.clone())).unwrap();
    assert!(ws.read().unwrap().into_data()[..] == big[..]);
}
