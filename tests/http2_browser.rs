//! What a browser sees over HTTP/2: headless Chromium loads a page through ringway over TLS and
//! fires 50 fetches at once; every one arrives, and the browser reports `h2` as the protocol of
//! the page and of each fetch (one connection carrying them all, not six HTTP/1.1 ones).

mod common;
use common::*;
use std::time::Duration;

const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const n = 50;
Promise.all(Array.from({length: n}, (_, i) => fetch('/api/panel/' + i).then(r => r.json())))
  .then(rs => {
    const ok = rs.filter((r, i) => r.url === '/api/panel/' + i).length;
    const fetched = performance.getEntriesByType('resource').filter(e => e.name.includes('/api/panel/'));
    const h2 = fetched.filter(e => e.nextHopProtocol === 'h2').length;
    const nav = performance.getEntriesByType('navigation')[0].nextHopProtocol;
    document.getElementById('out').textContent = `arrived=${ok} h2=${h2} page=${nav}`;
  })
  .catch(e => { document.getElementById('out').textContent = 'error ' + e; });
</script></body></html>"#;

#[test]
fn chromium_loads_a_page_and_50_parallel_fetches_over_h2() {
    let Some(bin) = chromium() else {
        if std::env::var_os("RINGWAY_REQUIRE_CHROMIUM").is_some() {
            panic!("chromium not found (scripts/test.sh installs it)");
        }
        eprintln!("chromium_loads_a_page_and_50_parallel_fetches_over_h2: no chromium on PATH; skipped");
        return;
    };
    // No idle upstream connections: the test backend serves four connections at a time and
    // queues the rest until one closes.
    let b = Backend::with(|_, url| match url {
        "/" => common::Reply::fixed(200, &[("Content-Type", "text/html")], PAGE),
        _ => common::Reply::Delay(Duration::from_millis(50)),
    });
    let dir = TempDir::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = dir.write("cert.pem", &cert.pem());
    let key = dir.write("key.pem", &key.serialize_pem());
    let p = Ringway::start(&format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n{}keepalive = 0\n[[route]]\nupstream = \"app\"\n",
        cert.display(),
        key.display(),
        upstream("app", b.addr)
    ));
    let url = format!("https://localhost:{}/", p.addr().port());
    let dom = run_chromium(
        &bin,
        &dir.path.join("profile"),
        &url,
        &["--dump-dom", "--ignore-certificate-errors"],
    );
    assert!(
        dom.contains("arrived=50 h2=50 page=h2"),
        "the page reported otherwise:\n{dom}"
    );
}
