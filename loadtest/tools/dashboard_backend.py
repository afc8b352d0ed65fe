#!/usr/bin/env python3
"""The dashboard-like site behind the proxies in loadtest/dashboard.sh (standard library only).

GET /                 an HTML page that loads the bundles, then fires PANELS panel queries at once
                      and writes what it measured into <pre id="result"> as JSON
GET /static/NAME.js   generated JavaScript bundles, JS_KB KiB in all
GET /api/panel/N      a small JSON body, answered after PANEL_MS ms
anything else         404

The JavaScript is made from a fixed seed, so every run serves the same bytes. It is valid code in
the shape a minifier leaves (short locals, repeated idioms, property names from a small
vocabulary), so it compresses about as well as a real bundle: about 4x with gzip -6, not the 100x
of repeated text nor the 1x of random bytes.
"""
import argparse
import json
import random
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("panel query series value time range label metric node cpu memory disk request error "
         "rate latency bucket target datasource legend axis tooltip render frame field unit "
         "threshold color override transform reduce join filter group sort limit refresh interval "
         "dashboard variable template annotation alert state store action reducer selector effect "
         "hook props context theme layout grid row column width height offset scale tick format "
         "parse").split()
STRINGS = ("Loading...", "No data", "Query error", "Last 6 hours", "Refresh", "Apply", "Cancel",
           "Edit panel", "Inspect", "Share", "Explore", "Time series", "Bar gauge", "Stat", "Table")
LOCALS = "etnroiasculdfph"
# Shapes a minifier leaves all over a bundle; the holes take local names and values.
IDIOMS = (
    'Object.defineProperty({0},"{w}",{{enumerable:!0,get:function(){{return {1}}}}});',
    'var {0}={1}.useState({n}),{2}={0}[0],{3}={0}[1];',
    'return {0}.createElement("div",{{className:"{w}",style:{{width:{n}}}}},{1});',
    'if(!{0})throw new Error("{s}");',
    '{0}.prototype.{w}=function({1}){{return this.{w}({1})}};',
    'for(var {0}=0;{0}<{1}.length;{0}++){2}.push({1}[{0}]);',
    'var {0}=void 0!=={1}?{1}:{n};',
    '{0}={0}||{{}};',
    'return {0}.map(function({1}){{return {1}.{w}}});',
)
# Bundle names and their share of JS_KB, like a small single-page app's build output.
BUNDLES = (("vendor", 0.45), ("app", 0.32), ("panels", 0.16), ("runtime", 0.07))


class CodeGen:
    """Deterministic pseudo-minified JavaScript: functions of idioms, assignments and returns."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.names = [self.word_name() for _ in range(300)]

    def word_name(self):
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 3))]
        return words[0] + "".join(w.capitalize() for w in words[1:])

    def name(self):
        return self.rng.choice(LOCALS) if self.rng.random() < 0.6 else self.rng.choice(self.names)

    def value(self, depth=0):
        r = self.rng
        k = r.random()
        if depth > 1 or k < 0.45:
            k = r.random()
            if k < 0.5:
                return self.name()
            if k < 0.7:
                return str(r.randint(0, 16) if r.random() < 0.8 else r.randint(0, 99999))
            if k < 0.95:
                return '"%s"' % (r.choice(STRINGS) if r.random() < 0.5 else r.choice(self.names))
            return '"%08x"' % r.getrandbits(32)
        if k < 0.6:
            op = r.choice(("+", "-", "*", "===", "!==", "&&", "||", "<"))
            return "%s%s%s" % (self.value(depth + 1), op, self.value(depth + 1))
        if k < 0.8:
            args = ",".join(self.value(depth + 1) for _ in range(r.randint(0, 3)))
            return "%s.%s(%s)" % (self.name(), r.choice(self.names), args)
        if k < 0.9:
            fields = (f"{r.choice(self.names)}:{self.value(depth + 1)}" for _ in range(r.randint(1, 3)))
            return "{%s}" % ",".join(fields)
        return "[%s]" % ",".join(self.value(depth + 1) for _ in range(r.randint(1, 3)))

    def statement(self):
        r = self.rng
        k = r.random()
        if k < 0.45:
            return r.choice(IDIOMS).format(*(r.choice(LOCALS) for _ in range(4)), w=r.choice(self.names),
                                           n=r.randint(0, 64), s=r.choice(STRINGS))
        if k < 0.7:
            return "var %s=%s;" % (r.choice(LOCALS), self.value())
        if k < 0.85:
            return "%s.%s=%s;" % (self.name(), r.choice(self.names), self.value())
        return "if(%s)return %s;" % (self.value(), self.value())

    def function(self):
        params = ",".join(LOCALS[:self.rng.randint(0, 3)])
        body = "".join(self.statement() for _ in range(self.rng.randint(2, 8)))
        return "function %s(%s){%sreturn %s}\n" % (self.rng.choice(self.names), params, body, self.value())


def bundle(name, seed, size):
    """About SIZE bytes of code; the last line tells the page this bundle ran."""
    gen, parts, n = CodeGen(seed), [], 0
    while n < size:
        parts.append(gen.function())
        n += len(parts[-1])
    parts.append('window.__bundles=(window.__bundles||[]).concat("%s");\n' % name)
    return "".join(parts).encode()


def page(names, panels):
    scripts = "".join(f'<script src="/static/{n}.js"></script>\n' for n in names)
    # Classic scripts at the end of <body>: the app runs once its bundles have, then queries every
    # panel at once, as a dashboard does. `last` is when the slowest panel answered, in ms since
    # navigation started; the protocol of each fetch says what the connection really spoke.
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dashboard</title></head>
<body><pre id="result"></pre>
{scripts}<script>
(async () => {{
  const start = performance.now();
  const ids = Array.from({{length: {panels}}}, (_, i) => i);
  let ok = 0, last = 0;
  await Promise.all(ids.map(i => fetch("/api/panel/" + i, {{cache: "no-store"}})
    .then(r => r.ok ? r.json() : null)
    .then(j => {{ if (j && j.panel === i) ok++; last = Math.max(last, performance.now()); }})
    .catch(() => {{}})));
  const protocols = {{}};
  for (const e of performance.getEntriesByType("resource")) {{
    protocols[e.nextHopProtocol || "?"] = (protocols[e.nextHopProtocol || "?"] || 0) + 1;
  }}
  document.getElementById("result").textContent = JSON.stringify({{
    last_panel_ms: Math.round(last), queries_start_ms: Math.round(start), panels_ok: ok, panels: {panels},
    bundles: (window.__bundles || []).length, bundles_expected: {len(names)},
    page_protocol: performance.getEntriesByType("navigation")[0].nextHopProtocol, protocols}});
}})();
</script>
</body></html>
""".encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--js-kb", type=int, default=3072, help="KiB of JavaScript in all bundles")
    ap.add_argument("--panels", type=int, default=40)
    ap.add_argument("--panel-ms", type=int, default=50)
    ap.add_argument("--ratio", action="store_true", help="print the bundles' gzip -6 ratio and exit")
    args = ap.parse_args()

    files = {f"/static/{n}.js": bundle(n, seed, int(args.js_kb * 1024 * share))
             for seed, (n, share) in enumerate(BUNDLES)}
    if args.ratio:
        raw = b"".join(files.values())
        print(f"{len(raw)} bytes of JavaScript (gzip -6 ratio {len(raw) / len(zlib.compress(raw, 6)):.2f})")
        return
    files["/"] = page([n for n, _ in BUNDLES], args.panels)
    delay = args.panel_ms / 1000

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the proxies can pool connections
        # Head and body leave in separate writes; with Nagle on, the body of a small answer would
        # wait for the proxy's delayed ACK (40 ms here), on every keep-alive request.
        disable_nagle_algorithm = True

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path.startswith("/api/panel/") and path[11:].isdigit():
                time.sleep(delay)
                n = int(path[11:])
                series = [[1733400000 + 15 * k, round(0.5 + 0.4 * ((n * 7 + k * 13) % 17) / 17, 3)]
                          for k in range(12)]
                body = json.dumps({"panel": n, "status": "success", "series": series}).encode()
                return self.send(200, "application/json", body, "no-store")
            body = files.get(path)
            if body is None:
                return self.send(404, "text/plain", b"not found\n", "no-store")
            ctype = "text/html; charset=utf-8" if path == "/" else "text/javascript; charset=utf-8"
            return self.send(200, ctype, body, "no-cache")

        def send(self, status, ctype, body, cache):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass  # thousands of lines per run tell nothing

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    server = Server(("127.0.0.1", args.port), Handler)
    print(f"dashboard backend on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
