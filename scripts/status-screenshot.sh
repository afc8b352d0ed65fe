#!/usr/bin/env bash
# Refreshes docs/status-page.png: starts ringway with an admin endpoint in front of a small
# backend on loopback, sends it a few requests (answered, not found, refused by a server that
# is down), and takes a screenshot of the status page with headless Chromium.
#
#   scripts/status-screenshot.sh                          # builds ringway (release) first
#   RINGWAY_BIN=target/debug/ringway scripts/status-screenshot.sh
#   OUT=/tmp/status.png scripts/status-screenshot.sh      # somewhere else
#
# Needs python3 (the backend), curl and chromium (scripts/test.sh installs the last two).
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-docs/status-page.png}
[[ $OUT == /* ]] || OUT="$PWD/$OUT"
for tool in python3 curl chromium; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "status-screenshot: needs $tool (apt-get install python3 curl chromium)" >&2; exit 1; }
done
if [[ -z ${RINGWAY_BIN:-} ]]; then
    cargo build --release --quiet
    RINGWAY_BIN=target/release/ringway
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# A free loopback port: bound and released by the kernel's choice (port 0).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Backend: a static directory with a health path, as a dashboard would answer.
mkdir -p "$tmp/www/api"
echo '{"database":"ok"}' >"$tmp/www/api/health"
echo '<!doctype html><title>dashboard</title>' >"$tmp/www/index.html"
backend=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$tmp/www" "$backend" >/dev/null 2>&1 &
pids+=($!)
down=$(free_port) # nothing listens here: the server shown as down

cat >"$tmp/ringway.toml" <<EOF
[server]
workers = 2

[[listener]]
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"

[upstream.grafana]
servers = ["127.0.0.1:$backend"]
health = { path = "/api/health", interval = "1s", rise = 1 }

[upstream.prometheus]
servers = ["127.0.0.1:$down"]
health = { path = "/-/ready", interval = "1s", fall = 1 }

[[route]]
prefix = "/grafana/"
upstream = "grafana"
strip_prefix = true

[[route]]
host = "metrics.example.com"
prefix = "/prometheus/"
upstream = "prometheus"
EOF

"$RINGWAY_BIN" --config "$tmp/ringway.toml" 2>"$tmp/ringway.err" &
pids+=($!)
for _ in $(seq 100); do
    grep -q 'ringway: ready' "$tmp/ringway.err" 2>/dev/null && break
    sleep 0.1
done
grep -q 'ringway: ready' "$tmp/ringway.err" || { cat "$tmp/ringway.err" >&2; exit 1; }
listen=$(sed -n 's/^ringway: listening on //p' "$tmp/ringway.err" | head -1)
admin=$(sed -n 's|^ringway: admin on \(http://[^ ]*\)|\1|p' "$tmp/ringway.err" | head -1)
[[ -n $listen && -n $admin ]] || { cat "$tmp/ringway.err" >&2; exit 1; }

# Traffic for the counters: answered, not found upstream, no route, and a server that is down.
for _ in $(seq 12); do curl -s -o /dev/null "http://$listen/grafana/"; done
for _ in $(seq 3); do curl -s -o /dev/null "http://$listen/grafana/missing"; done
curl -s -o /dev/null "http://$listen/other/"
curl -s -o /dev/null -H 'Host: metrics.example.com' "http://$listen/prometheus/api/v1/query"
sleep 2.5 # two health-check intervals, so both servers show their state

rm -f "$OUT"

chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$tmp/chromium" \
    --hide-scrollbars --window-size=1100,760 --virtual-time-budget=3000 \
    --screenshot="$OUT" "$admin" >/dev/null 2>"$tmp/chromium.err" || true
[[ -s $OUT ]] || { cat "$tmp/chromium.err" >&2; echo "status-screenshot: chromium wrote no $OUT" >&2; exit 1; }
echo "status-screenshot: wrote $OUT from $admin" >&2
