#!/usr/bin/env bash
# Instructions per proxied request, from valgrind's callgrind: unlike CPU time on this shared
# 2-core host, instruction counts do not move with the neighbours' load, so they show whether a
# change to the request path made it cheaper. User-space only: syscalls and io_uring work done by
# the kernel are not counted (see `strace -c` in README's Benchmarks for those).
#
#   loadtest/callgrind.sh                       # plain HTTP keep-alive, 100-byte responses
#   MODE=tls loadtest/callgrind.sh              # the same over TLS 1.3 keep-alive (ECDSA P-256)
#   RINGWAY_BIN=target/release/ringway MONOIO_FORCE_LEGACY_DRIVER=1 loadtest/callgrind.sh
#
# Ringway runs with one worker under callgrind. After a warm-up, two measured wrk runs (1 s and
# DURATION s, counters zeroed before and dumped after each) give Ir per request as the difference
# of their instruction counts over the difference of their requests, so the fixed cost of opening
# the connections (and TLS handshakes) drops out. Prints that and the top functions of the long
# run; its raw profile stays in loadtest/out/ for callgrind_annotate.
#
# Env: DURATION (s, default 5), CONNS (8), MODE (http | tls), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-5}
CONNS=${CONNS:-8}
MODE=${MODE:-http}
[[ $DURATION =~ ^[0-9]+$ && $CONNS =~ ^[0-9]+$ ]] || lt_die "DURATION and CONNS must be whole numbers"
[[ $MODE == http || $MODE == tls ]] || lt_die "MODE must be http or tls, got '$MODE'"

lt_require_tools nginx wrk curl valgrind openssl
LT_RINGWAY=$(lt_ringway_bin)
lt_init

BODY=$(printf 'ringway-loadtest-%083d' 0)   # exactly 100 bytes, as in http.sh
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        default_type text/plain;
        location / { return 200 \"$BODY\"; }"

lt_free_port port
scheme=http
if [[ $MODE == tls ]]; then
    lt_tls_cert "$LT_TMP/cert"
    scheme=https
    tls_block="
[[listener.tls]]
cert = \"$LT_TMP/cert/cert.pem\"
key = \"$LT_TMP/cert/key.pem\""
else
    tls_block=""
fi
cat >"$LT_TMP/ringway.toml" <<EOF
[server]
workers = 1

[[listener]]
bind = "127.0.0.1:$port"
$tls_block

[upstream.backend]
servers = ["127.0.0.1:$backend_port"]

[[route]]
prefix = "/"
upstream = "backend"
EOF

stamp=$(date -u +%Y%m%d-%H%M%S)
prof="$LT_OUT/callgrind-$MODE-$stamp.out"
# Names uncompressed: each dump then carries its own function names, so callgrind_annotate can
# read the kept dump alone (compressed, the names are defined once, in the dump that is removed).
lt_spawn ringway "$LT_PROXY_CPU" valgrind --tool=callgrind --compress-strings=no \
    --callgrind-out-file="$prof" "$LT_RINGWAY" --config "$LT_TMP/ringway.toml"
pid=$LT_LAST_PID
# Valgrind start-up is slow: give it up to a minute.
for _ in $(seq 600); do lt_port_open "$port" && break; sleep 0.1; done
lt_port_open "$port" || { tail -n 20 "$LT_TMP/ringway.log" >&2; lt_die "ringway under valgrind did not listen"; }
got=$(curl -sSk --max-time 30 -o /dev/null -w '%{http_code}' "$scheme://127.0.0.1:$port/") || true
[[ $got == 200 ]] || lt_die "ringway answered '$got' instead of 200"

wrk_run() { taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$CONNS" -d"$1"s "$scheme://127.0.0.1:$port/"; }
# Warm-up: fills the upstream pool and the buffer pools, so they are not charged to requests.
lt_run_bg wrk_run 2 >/dev/null

# measure SECONDS: zero the counters, run wrk, dump; prints "IR REQUESTS" (run in a subshell,
# so the dump file is found again by the caller as the newest one).
measure() {
    callgrind_control -z "$pid" >/dev/null
    lt_run_bg wrk_run "$1" >"$LT_TMP/wrk-$1.txt"
    callgrind_control -d "$pid" >/dev/null
    sleep 0.5
    local req ir
    read -r req _ < <(lt_wrk_parse "$LT_TMP/wrk-$1.txt")
    ((req > 0)) || lt_die "no requests completed"
    # Each dump is a new file named after the profile; the newest is this one.
    DUMP=$(ls -t "$prof".* 2>/dev/null | head -1)
    [[ -n $DUMP ]] || lt_die "callgrind wrote no dump"
    ir=$(awk '/^summary:/ { print $2; exit }' "$DUMP")
    echo "$ir $req"
}
# Two runs, 1 s and DURATION s, each opening CONNS new connections: the difference leaves out
# what a connection costs once (accept, and in TLS mode the handshake), so only requests remain.
read -r ir1 req1 < <(measure 1)
short_dump=$(ls -t "$prof".* | head -1)
read -r ir2 req2 < <(measure "$DURATION")
DUMP=$(ls -t "$prof".* | head -1)
((req2 > req1)) || lt_die "the ${DURATION}s run completed no more requests than the 1 s run"
echo "mode $MODE, $CONNS keep-alive connections under callgrind: $req1 requests in 1 s ($ir1 Ir), $req2 in ${DURATION}s ($ir2 Ir)"
echo "Ir per request $(awk -v a="$ir1" -v b="$ir2" -v m="$req1" -v n="$req2" 'BEGIN { printf "%.0f", (b - a) / (n - m) }')" \
    "(whole ${DURATION}s run incl. connection set-up: $(awk -v a="$ir2" -v n="$req2" 'BEGIN { printf "%.0f", a / n }'))"
rm -f "$short_dump"
dump=$DUMP
echo "profile: ${dump#"$LT_ROOT"/}  (callgrind_annotate --inclusive=yes $dump | less)"
callgrind_annotate "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | head -30 || true
