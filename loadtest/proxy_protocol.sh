#!/usr/bin/env bash
# What the PROXY protocol header costs per new connection: ringway with `proxy_protocol = true`
# and HAProxy with `accept-proxy`, each against itself without the header, same run. wrk opens a
# connection per request (`Connection: close`); with the header, each connection starts with
# `PROXY TCP4 203.0.113.7 127.0.0.1 40000 80` (v1, what `send-proxy` sends). One worker each on
# core 0, nginx backend and wrk on core 1; CPU from schedstat.
#
#   loadtest/proxy_protocol.sh                 # 3 rounds x 4 variants x 5 s, 16 connections
#   DURATION=3 ROUNDS=1 loadtest/proxy_protocol.sh
#
# Env: DURATION (5), ROUNDS (3), CONNS (16), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
for v in DURATION ROUNDS CONNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || lt_die "$v must be a whole number above 0, got '${!v}'"
done
cmdline="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS loadtest/proxy_protocol.sh"

lt_require_tools nginx haproxy wrk
LT_RINGWAY=$(lt_ringway_bin)
lt_init

lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        default_type text/plain;
        location / { return 200 \"ok\"; }"

declare -A port=() pid=()
variants=(ringway ringway_pp haproxy haproxy_pp)
for v in "${variants[@]}"; do
    lt_free_port "port[$v]"
    case $v in
    ringway) LT_RINGWAY_NAME=ringway LT_RINGWAY_LISTENER="" lt_start_proxy_ringway "${port[$v]}" "$backend_port" ;;
    ringway_pp) LT_RINGWAY_NAME=ringway_pp LT_RINGWAY_LISTENER="proxy_protocol = true" lt_start_proxy_ringway "${port[$v]}" "$backend_port" ;;
    haproxy) LT_HAPROXY_NAME=haproxy LT_HAPROXY_BIND="" lt_start_proxy_haproxy "${port[$v]}" "$backend_port" ;;
    haproxy_pp) LT_HAPROXY_NAME=haproxy_pp LT_HAPROXY_BIND="accept-proxy" lt_start_proxy_haproxy "${port[$v]}" "$backend_port" ;;
    esac
    pid[$v]=$LT_LAST_PID
done

cat >"$LT_TMP/plain.lua" <<'EOF'
wrk.headers["Connection"] = "close"
EOF
cat >"$LT_TMP/pp.lua" <<'EOF'
-- wrk checks thread 1's first request() result with an HTTP parser before sending anything:
-- that check gets the bare request, every request sent the PROXY form (hence wrk -t1).
wrk.headers["Connection"] = "close"
local calls = 0
request = function()
    calls = calls + 1
    local req = wrk.format("GET", "/")
    if calls > 1 then return "PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n" .. req end
    return req
end
EOF
lua_of() { [[ $1 == *_pp ]] && echo "$LT_TMP/pp.lua" || echo "$LT_TMP/plain.lua"; }

declare -A cpu=() errs=()
n=${#variants[@]}
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        v=${variants[$(((i + r) % n))]}
        out="$LT_TMP/wrk-$v-$r.txt"
        c0=$(lt_cpu_ns "${pid[$v]}")
        lt_run_bg taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$(lua_of "$v")" "http://127.0.0.1:${port[$v]}/" >"$out"
        sleep 0.2
        c1=$(lt_cpu_ns "${pid[$v]}")
        read -r req rs _ _ e < <(lt_wrk_parse "$out")
        ((req > 0)) || lt_die "$v completed no requests (see $out)"
        us=$(awk -v a="$c0" -v b="$c1" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
        cpu[$v]+=" $us"
        errs[$v]=$((${errs[$v]:-0} + e))
        lt_log "round $((r + 1))/$ROUNDS $v: $rs conn/s, $us µs CPU per connection, errors $e"
    done
done

report() {
    echo "### PROXY protocol header per new connection (medians of $ROUNDS round(s) x ${DURATION}s, $CONNS connections)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| proxy | CPU µs per connection, no header | with a v1 header | header cost | errors (with header) |"
    echo "|---|---:|---:|---:|---:|"
    local p a b
    for p in ringway haproxy; do
        a=$(lt_median ${cpu[$p]})
        b=$(lt_median ${cpu[${p}_pp]})
        printf '| %s | %.1f | %.1f | %+.1f µs (%+.1f%%) | %s |\n' "$p" "$a" "$b" \
            "$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')" \
            "$(awk -v a="$a" -v b="$b" 'BEGIN { print (b - a) / a * 100 }')" "${errs[${p}_pp]}"
    done
    echo
    echo "Each connection carries one request (\`Connection: close\`), so CPU per connection includes"
    echo "accept, the request, the upstream exchange and the close. ringway: \`proxy_protocol = true\`;"
    echo "HAProxy: \`bind ... accept-proxy\`. All rounds: ringway ${cpu[ringway]} / pp ${cpu[ringway_pp]};"
    echo "haproxy ${cpu[haproxy]} / pp ${cpu[haproxy_pp]} (µs)."
    lt_machine_info
}
outfile="$LT_OUT/proxy-protocol-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
