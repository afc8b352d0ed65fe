//! The access step's answers over HTTP/2, through the built binary and a Rust h2 client (prior
//! knowledge): an address denied (403), a rate limit (429 with Retry-After), basic auth (401
//! with WWW-Authenticate), a CORS preflight (204 with its allow fields), and a forward-auth
//! service's own denial passed back (its status, fields and body, its chunked framing undone).
//! Each arrives as HEADERS and DATA with no connection-specific field; the same answers over
//! HTTP/1.1 keep their exact bytes.

mod common;
use bytes::Bytes;
use common::*;
use std::net::SocketAddr;

/// Fields HTTP/2 forbids in a response (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// An auth service that denies everything: a 401 with a challenge, a field of its own, a chunked
/// body and keep-alive fields, then it closes.
fn denying_auth_service() -> Scripted {
    Scripted::start(|_, _, _| {
        Step::reply_close(
            b"HTTP/1.1 401 Login Please\r\nWWW-Authenticate: Bearer realm=\"sso\"\r\nX-Auth-Reason: expired\r\n\
              Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n\
              7\r\nsession\r\n8\r\n expired\r\n0\r\n\r\n",
        )
    })
}

/// The proxy, then what it needs (dropped in that order): a backend, the auth service, a
/// directory for the password file.
fn start() -> (Ringway, TempDir, Scripted, Backend) {
    let b = Backend::echo();
    let auth = denying_auth_service();
    let dir = TempDir::new();
    let p = proxy(&dir, b.addr, auth.addr);
    (p, dir, auth, b)
}

fn proxy(dir: &TempDir, backend: SocketAddr, auth: SocketAddr) -> Ringway {
    let htpasswd = dir.write(
        "staff.htpasswd",
        "alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S\n",
    );
    let cfg = format!(
        "[server]\nworkers = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\nh2c = true\n\
         [auth.staff]\nbasic = {{ htpasswd = \"{}\", realm = \"Staff\" }}\n\
         [auth.sso]\nforward = {{ url = \"http://{auth}/check\" }}\n{}\
         [[route]]\nprefix = \"/closed/\"\nupstream = \"app\"\ndeny = [\"127.0.0.0/8\"]\n\
         [[route]]\nprefix = \"/limited/\"\nupstream = \"app\"\nrate_limit = {{ per_second = 1, burst = 1 }}\n\
         [[route]]\nprefix = \"/staff/\"\nupstream = \"app\"\nauth = \"staff\"\n\
         [[route]]\nprefix = \"/sso/\"\nupstream = \"app\"\nauth = \"sso\"\n\
         [[route]]\nprefix = \"/cors/\"\nupstream = \"app\"\n\
         cors = {{ allow_origin = [\"https://app.example.com\"], allow_methods = [\"GET\", \"POST\"], allow_headers = [\"Authorization\"], max_age = \"10m\" }}\n",
        htpasswd.display(),
        upstream("app", backend),
    );
    Ringway::start(&cfg)
}

struct Answer {
    status: u16,
    fields: http::HeaderMap,
    body: String,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(|v| v.to_str().ok())
    }

    /// No field HTTP/2 forbids, and a length that matches the body when one is stated.
    fn assert_well_formed(&self, what: &str) {
        for name in CONNECTION_SPECIFIC {
            assert!(self.fields.get(name).is_none(), "{what}: {name} in {:?}", self.fields);
        }
        if let Some(len) = self.field("content-length") {
            assert_eq!(len, self.body.len().to_string(), "{what}: content-length");
        }
    }
}

async fn ask(client: &h2::client::SendRequest<Bytes>, method: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://app.test{path}"));
    for (n, v) in fields {
        req = req.header(*n, *v);
    }
    let mut client = client.clone().ready().await.unwrap();
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let fields = resp.headers().clone();
    let mut recv = resp.into_body();
    let mut body = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d.unwrap();
        let _ = recv.flow_control().release_capacity(d.len());
        body.extend_from_slice(&d);
    }
    Answer {
        status,
        fields,
        body: String::from_utf8(body).unwrap(),
    }
}

#[test]
fn access_answers_arrive_over_http2_with_their_fields_and_body() {
    let (p, _dir, _auth, b) = start();
    let addr = p.addr();
    runtime().block_on(async move {
        let c = h2c(addr).await;

        let a = ask(&c, "GET", "/closed/x", &[]).await;
        a.assert_well_formed("deny");
        assert_eq!(a.status, 403);
        assert_eq!(a.field("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(a.body, "access from this address is not allowed\n");

        assert_eq!(ask(&c, "GET", "/limited/1", &[]).await.status, 200);
        let a = ask(&c, "GET", "/limited/2", &[]).await;
        a.assert_well_formed("rate limit");
        assert_eq!(a.status, 429);
        assert_eq!(a.field("retry-after"), Some("1"));
        assert_eq!(a.body, "too many requests\n");

        let a = ask(&c, "GET", "/staff/x", &[]).await;
        a.assert_well_formed("basic auth");
        assert_eq!(a.status, 401);
        assert_eq!(
            a.field("www-authenticate"),
            Some("Basic realm=\"Staff\", charset=\"UTF-8\"")
        );
        assert_eq!(a.body, "authentication required\n");

        let preflight = [
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ];
        let a = ask(&c, "OPTIONS", "/cors/api", &preflight).await;
        a.assert_well_formed("preflight");
        assert_eq!(a.status, 204);
        assert_eq!(a.field("access-control-allow-origin"), Some("https://app.example.com"));
        assert_eq!(a.field("access-control-allow-methods"), Some("GET, POST"));
        assert_eq!(a.field("access-control-allow-headers"), Some("Authorization"));
        assert_eq!(a.field("access-control-max-age"), Some("600"));
        assert_eq!(a.field("vary"), Some("Origin"));
        assert_eq!(a.body, "");
        let refused = [
            ("origin", "https://evil.example.com"),
            ("access-control-request-method", "POST"),
        ];
        assert_eq!(ask(&c, "OPTIONS", "/cors/api", &refused).await.status, 403);
        // An actual request from the allowed origin: the route's fields on a proxied response.
        let a = ask(&c, "GET", "/cors/api", &preflight[..1]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.field("access-control-allow-origin"), Some("https://app.example.com"));
        assert_eq!(a.field("vary"), Some("Origin"));

        let a = ask(&c, "GET", "/sso/x", &[]).await;
        a.assert_well_formed("forward auth");
        assert_eq!(a.status, 401);
        assert_eq!(a.field("www-authenticate"), Some("Bearer realm=\"sso\""));
        assert_eq!(a.field("x-auth-reason"), Some("expired"));
        assert_eq!(a.body, "session expired");
        // HEAD: the length of the answer, no body.
        let a = ask(&c, "HEAD", "/sso/x", &[]).await;
        assert_eq!(
            (a.status, a.field("content-length"), a.body.as_str()),
            (401, Some("15"), "")
        );

        // None of these reached the upstream; the one allowed request and the CORS GET did.
        assert_eq!(b.hits(), 2);
    });
}

#[test]
fn access_answers_over_http11_keep_their_bytes() {
    let (p, _dir, _auth, _b) = start();
    let text = |path: &str, extra: &[&str]| {
        let r = raw_roundtrip(p.addr(), &get_req(path, "app.test", extra));
        String::from_utf8_lossy(&[&r.raw_head[..], &r.body[..]].concat()).into_owned()
    };
    assert_eq!(
        text("/closed/x", &[]),
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 40\r\n\r\n\
         access from this address is not allowed\n"
    );
    assert_eq!(
        text("/staff/x", &["Connection: close"]),
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Staff\", charset=\"UTF-8\"\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nConnection: close\r\n\r\n\
         authentication required\n"
    );
    assert_eq!(
        text("/sso/x", &[]),
        "HTTP/1.1 401 Login Please\r\nWWW-Authenticate: Bearer realm=\"sso\"\r\nX-Auth-Reason: expired\r\n\
         Content-Length: 15\r\n\r\nsession expired"
    );
    let r = raw_roundtrip(
        p.addr(),
        b"OPTIONS /cors/api HTTP/1.1\r\nHost: app.test\r\nOrigin: https://app.example.com\r\n\
          Access-Control-Request-Method: POST\r\n\r\n",
    );
    assert!(r.body.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&r.raw_head),
        "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://app.example.com\r\nVary: Origin\r\n\
         Access-Control-Allow-Methods: GET, POST\r\nAccess-Control-Allow-Headers: Authorization\r\n\
         Access-Control-Max-Age: 600\r\n\r\n"
    );
}
