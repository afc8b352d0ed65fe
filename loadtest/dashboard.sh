#!/usr/bin/env bash
# What a user feels: a dashboard-like page loaded by headless Chromium through each proxy over TLS,
# cold cache, behind a loopback latency shim (tools/latency_shim.py: DELAY_MS each way, RATE_MBIT
# per direction, bytes counted). The page (tools/dashboard_backend.py) loads about 3 MB of
# JavaScript in 4 bundles, then fires PANELS panel queries at once, each answered by the backend
# after PANEL_MS; it records when the last panel answered and the protocol of every fetch.
# Reports, per row, the median over LOADS loads of that time and of the bytes relayed to the
# browser. Rows, one worker each on core 0:
#   ringway-h1  ringway over HTTP/1.1 (`http2 = false` on its TLS listener where the key exists)
#   ringway-h2  ringway over HTTP/2 (`http2 = true`; skipped when the binary has no such key)
#   nginx-h2    nginx over HTTP/2 (`http2 on`, or `listen ... ssl http2` before nginx 1.25.1)
#   caddy-h2    Caddy over HTTP/2 (Debian's caddy; skipped when it cannot be installed)
# With COMPRESS=1 each row also runs with compression on (ringway `compress = true` where the
# binary has it, nginx `gzip on` level 5, Caddy `encode gzip zstd`), and the report gives the
# bytes ratio per proxy. Interleaved: each round loads the page once through every row.
#
#   loadtest/dashboard.sh                          # 7 loads x 4 rows (~2 min)
#   COMPRESS=1 loadtest/dashboard.sh               # + every row with compression on
#   DELAY_MS=0 RATE_MBIT=0 LOADS=3 loadtest/dashboard.sh   # plain loopback (the shim still counts)
#   ROWS="ringway-h1 nginx-h2" RINGWAY_BIN=target/release/ringway loadtest/dashboard.sh
#
# Env: LOADS (7), ROWS (all four), COMPRESS (0), DELAY_MS (20), RATE_MBIT (50, 0 = no cap),
#      PANELS (40), PANEL_MS (50), JS_KB (3072), LOAD_TIMEOUT (s per load, 60), CHROMIUM
#      (/usr/bin/chromium), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_ROWS="ringway-h1 ringway-h2 nginx-h2 caddy-h2"
LOADS=${LOADS:-7}
ROWS=${ROWS:-$ALL_ROWS}
COMPRESS=${COMPRESS:-0}
DELAY_MS=${DELAY_MS:-20}
RATE_MBIT=${RATE_MBIT:-50}
PANELS=${PANELS:-40}
PANEL_MS=${PANEL_MS:-50}
JS_KB=${JS_KB:-3072}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-60}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
for v in LOADS DELAY_MS RATE_MBIT PANELS PANEL_MS JS_KB LOAD_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
((LOADS > 0 && PANELS > 0 && JS_KB > 0 && LOAD_TIMEOUT > 0)) || lt_die "LOADS, PANELS, JS_KB, LOAD_TIMEOUT must be > 0"
[[ $COMPRESS == 0 || $COMPRESS == 1 ]] || lt_die "COMPRESS must be 0 or 1, got '$COMPRESS'"
read -r -a wanted <<<"$ROWS"
for r in "${wanted[@]}"; do
    [[ " $ALL_ROWS " == *" $r "* ]] || lt_die "unknown row '$r' in ROWS (known: $ALL_ROWS)"
done
[[ -x $CHROMIUM ]] || lt_die "no Chromium at $CHROMIUM (apt-get install chromium, or set CHROMIUM)"

cmdline="LOADS=$LOADS"
[[ $ROWS != "$ALL_ROWS" ]] && cmdline+=" ROWS=\"$ROWS\""
[[ $COMPRESS != 0 ]] && cmdline+=" COMPRESS=$COMPRESS"
[[ $DELAY_MS != 20 ]] && cmdline+=" DELAY_MS=$DELAY_MS"
[[ $RATE_MBIT != 50 ]] && cmdline+=" RATE_MBIT=$RATE_MBIT"
[[ $PANELS != 40 ]] && cmdline+=" PANELS=$PANELS"
[[ $PANEL_MS != 50 ]] && cmdline+=" PANEL_MS=$PANEL_MS"
[[ $JS_KB != 3072 ]] && cmdline+=" JS_KB=$JS_KB"
[[ -n ${RINGWAY_BIN:-} ]] && cmdline+=" RINGWAY_BIN=$RINGWAY_BIN"
cmdline+=" loadtest/dashboard.sh"

lt_require_tools nginx curl openssl python3
if [[ " $ROWS " == *" caddy-h2 "* ]] && ! command -v caddy >/dev/null; then
    (lt_require_tools caddy) || true # a subshell: a failed install skips the row, not the run
fi
[[ " $ROWS " == *" ringway-"* ]] && LT_RINGWAY=$(lt_ringway_bin)
load_start=$(cut -d' ' -f1-3 /proc/loadavg) # other work on this shared host shows here
lt_init
lt_csv_open dashboard-page-load "$cmdline"
lt_tls_cert "$LT_TMP/cert"
LT_TLS_DIR="$LT_TMP/cert"

# --- what each proxy can do ------------------------------------------------------------------

# ringway_accepts LISTENER_LINES ROUTE_LINES: true when `ringway check` takes a TLS listener and a
# route with these extra lines (unknown keys are errors, so this tells whether a build has them).
ringway_accepts() {
    cat >"$LT_TMP/probe.toml" <<EOF
[[listener]]
bind = "127.0.0.1:1"
$1
[[listener.tls]]
cert = "$LT_TLS_DIR/cert.pem"
key = "$LT_TLS_DIR/key.pem"

[upstream.backend]
servers = ["127.0.0.1:1"]

[[route]]
prefix = "/"
upstream = "backend"
$2
EOF
    "$LT_RINGWAY" check --config "$LT_TMP/probe.toml" >"$LT_TMP/probe.out" 2>&1
}
# probe_error: the first error line of the last probe, without the list of keys it expected.
probe_error() { head -1 "$LT_TMP/probe.out" | sed -e 's/, expected .*//' -e "s|$LT_TMP/||"; }

# nginx took `http2 on;` in 1.25.1; before that, http2 is a parameter of `listen`.
nginx_version=$(nginx -v 2>&1 | sed 's/.*nginx\///')
if printf '%s\n' 1.25.1 "$nginx_version" | sort -V -C; then
    nginx_h2=("" "http2 on;")
else
    nginx_h2=(" http2" "")
fi

declare -A note=() expect=() compressed=()
rows=()
for r in "${wanted[@]}"; do
    variants=("$r")
    ((COMPRESS)) && variants+=("$r+compress")
    for v in "${variants[@]}"; do
        expect[$v]=h2
        [[ $v == ringway-h1* ]] && expect[$v]=http/1.1
        [[ $v == *+compress ]] && compressed[$v]=1
        case $v in
        ringway-*)
            if [[ $v == *+compress ]] && ! ringway_accepts "" "compress = true"; then
                note[$v]="skipped: this ringway has no \`[[route]] compress\` key ($(probe_error))"
                continue
            fi
            if ! ringway_accepts "http2 = true" ""; then
                if [[ $v == ringway-h2* ]]; then
                    note[$v]="skipped: this ringway has no \`[[listener]] http2\` key, so it speaks only HTTP/1.1 ($(probe_error))"
                    continue
                fi
                note[$v]="this ringway has no \`http2\` key and speaks only HTTP/1.1, so its listener needs none"
            fi ;;
        caddy-*)
            command -v caddy >/dev/null || { note[$v]="skipped: caddy is not installed and apt-get could not install it"; continue; } ;;
        esac
        rows+=("$v")
    done
done
((${#rows[@]})) || lt_die "no row can run here: ${note[*]}"

# --- backend and proxies ---------------------------------------------------------------------

backend_port=""
lt_free_port backend_port
lt_spawn backend "$LT_LOAD_CPU" python3 "$LT_DIR/tools/dashboard_backend.py" --port "$backend_port" \
    --js-kb "$JS_KB" --panels "$PANELS" --panel-ms "$PANEL_MS"
lt_wait_ready backend "$LT_LAST_PID" "$backend_port"
js_info=$(python3 "$LT_DIR/tools/dashboard_backend.py" --port 0 --js-kb "$JS_KB" --ratio)

start_nginx() { # NAME PORT
    local dir="$LT_TMP/$1" gzip=""
    [[ -n ${compressed[$1]:-} ]] && gzip="gzip on;
        gzip_comp_level 5;
        gzip_min_length 1024;
        gzip_types text/javascript application/javascript application/json;"
    lt_nginx_conf "$dir" "$(lt_affinity_mask "$LT_PROXY_CPU")" "
    upstream backend {
        server 127.0.0.1:$backend_port;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$2 ssl${nginx_h2[0]};
        ${nginx_h2[1]}
        ssl_certificate $LT_TLS_DIR/cert.pem;
        ssl_certificate_key $LT_TLS_DIR/key.pem;
        $gzip
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }"
    lt_nginx_run "$1" "$LT_PROXY_CPU" "$dir"
    lt_wait_ready "$1" "$LT_LAST_PID" "$2"
}

start_caddy() { # NAME PORT
    local dir="$LT_TMP/$1" encode=""
    [[ -n ${compressed[$1]:-} ]] && encode="encode gzip zstd"
    mkdir -p "$dir"
    # No admin endpoint, no state on disk outside $dir, no HTTP/3 (its Alt-Svc would send
    # Chromium to Caddy's UDP port around the shim), no port-80 redirect.
    cat >"$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2
	}
}
https://127.0.0.1:$2 {
	tls $LT_TLS_DIR/cert.pem $LT_TLS_DIR/key.pem
	$encode
	reverse_proxy 127.0.0.1:$backend_port
}
EOF
    lt_spawn "$1" "$LT_PROXY_CPU" env GOMAXPROCS=1 HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" \
        caddy run --adapter caddyfile --config "$dir/Caddyfile"
    lt_wait_ready "$1" "$LT_LAST_PID" "$2"
}

start_row() { # NAME PORT
    case $1 in
    ringway-*)
        local listener="" route=""
        [[ ${note[$1]:-} == *"no \`http2\` key"* ]] || listener="http2 = $([[ $1 == ringway-h2* ]] && echo true || echo false)"
        [[ -n ${compressed[$1]:-} ]] && route="compress = true"
        LT_RINGWAY_NAME=$1 LT_RINGWAY_LISTENER=$listener lt_start_proxy_ringway "$2" "$backend_port" "$route" ;;
    nginx-*) start_nginx "$1" "$2" ;;
    caddy-*) start_caddy "$1" "$2" ;;
    esac
}

declare -A port=() pid=() encoding=()
for v in "${rows[@]}"; do
    lt_free_port "port[$v]"
    start_row "$v" "${port[$v]}"
    pid[$v]=$LT_LAST_PID
    # Check before measuring: the page comes back, the protocol is the row's, and what a bundle
    # is encoded with when asked as Chromium asks.
    want=--http1.1
    [[ ${expect[$v]} == h2 ]] && want=--http2
    got=$(curl -sS -k "$want" --max-time 10 -o /dev/null -H 'Accept-Encoding: gzip, deflate, br, zstd' \
        -w '%{http_code} %{http_version} %header{content-encoding}' "https://127.0.0.1:${port[$v]}/static/app.js") || true
    read -r code version enc <<<"$got"
    [[ ${code:-} == 200 ]] || lt_die "$v on port ${port[$v]}: /static/app.js gave '${got:-no answer}' (log: $LT_TMP/$v.log)"
    [[ ${expect[$v]} != h2 || $version == 2 ]] || lt_die "$v on port ${port[$v]}: curl --http2 got HTTP/$version, not HTTP/2"
    encoding[$v]=${enc:-none}
    lt_log "$v on https://127.0.0.1:${port[$v]} (pid ${pid[$v]}, core $LT_PROXY_CPU): HTTP/$version, bundles encoded: ${encoding[$v]}"
done

# --- loads -----------------------------------------------------------------------------------

# load_once ROW ROUND: a fresh shim in front of ROW, one cold page load through it, the shim's
# byte counts. Sets the globals RESULT (the page's JSON) and SHIM (the shim's totals line).
load_once() {
    local v=$1 r=$2 sp shim_pid
    lt_free_port sp
    lt_spawn "shim-$v" "$LT_LOAD_CPU" python3 "$LT_DIR/tools/latency_shim.py" --listen "$sp" \
        --target "${port[$v]}" --delay-ms "$DELAY_MS" --rate-mbit "$RATE_MBIT"
    shim_pid=$LT_LAST_PID
    lt_wait_ready "shim-$v" "$shim_pid" "$sp"
    # The loader bounds itself (LOAD_TIMEOUT); timeout(1) is there should Chromium not let go.
    if ! lt_run_bg timeout -k 5 $((LOAD_TIMEOUT + 15)) taskset -c "$LT_LOAD_CPU" \
        python3 "$LT_DIR/tools/page_load.py" --timeout "$LOAD_TIMEOUT" --chromium "$CHROMIUM" \
        "https://127.0.0.1:$sp/" >"$LT_TMP/load.json" 2>"$LT_TMP/load-$v-$r.err"; then
        cat "$LT_TMP/load-$v-$r.err" >&2
        tail -n 5 "$LT_TMP/$v.log" >&2
        lt_die "$v: load $r through the shim failed (above: the loader's error and the proxy log's tail)"
    fi
    RESULT=$(<"$LT_TMP/load.json")
    kill -TERM "$shim_pid"
    for _ in $(seq 50); do kill -0 "$shim_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$shim_pid" 2>/dev/null || true
    wait "$shim_pid" 2>/dev/null || true
    unset 'LT_PIDS[-1]' # the shim, reaped: cleanup must not signal its pid again
    SHIM=$(grep '^shim: to_server=' "$LT_TMP/shim-$v.log" | tail -1)
    [[ -n $SHIM ]] || lt_die "$v: the shim printed no byte counts ($LT_TMP/shim-$v.log)"
}

# page_fields JSON: "last_ms start_ms panels_ok panels bundles bundles_expected protocol", the
# protocol being the one most of the page's fetches used.
page_fields() {
    python3 -c 'import json, sys
d = json.loads(sys.argv[1])
p = max(d["protocols"], key=d["protocols"].get) if d["protocols"] else "?"
print(d["last_panel_ms"], d["queries_start_ms"], d["panels_ok"], d["panels"], d["bundles"], d["bundles_expected"], p)' "$1"
}

declare -A t_last=() t_panels=() b_down=() b_up=() conns=() protos=()
runs_md=""
n=${#rows[@]}
for ((r = 1; r <= LOADS; r++)); do
    for ((i = 0; i < n; i++)); do
        v=${rows[$(((i + r - 1) % n))]}
        kill -0 "${pid[$v]}" 2>/dev/null || { tail -n 20 "$LT_TMP/$v.log" >&2; lt_die "$v (pid ${pid[$v]}) is gone"; }
        load_once "$v" "$r"
        read -r last start ok panels bundles bundles_want proto < <(page_fields "$RESULT")
        ((ok == panels && bundles == bundles_want)) ||
            lt_die "$v: load $r: $ok of $panels panels and $bundles of $bundles_want bundles arrived: $RESULT"
        read -r up down c < <(sed -E 's/.*to_server=([0-9]+) to_client=([0-9]+) connections=([0-9]+).*/\1 \2 \3/' <<<"$SHIM")
        t_last[$v]+=" $last"; t_panels[$v]+=" $((last - start))"
        b_down[$v]+=" $down"; b_up[$v]+=" $up"; conns[$v]+=" $c"
        [[ " ${protos[$v]:-} " == *" $proto "* ]] || protos[$v]+=" $proto"
        lt_csv_row "$r" "$v" last_panel_ms "$last"
        lt_csv_row "$r" "$v" panel_phase_ms "$((last - start))"
        lt_csv_row "$r" "$v" bytes_to_client "$down"
        lt_csv_row "$r" "$v" bytes_to_server "$up"
        lt_csv_row "$r" "$v" connections "$c"
        runs_md+="| $r | $v | $proto | $last | $start | $down | $up | $c |"$'\n'
        lt_log "load $r/$LOADS $v: last panel at $last ms (queries from $start ms), $proto, $down bytes to the browser, $c connection(s)"
    done
done

# --- report ----------------------------------------------------------------------------------

# med "N N ...": lt_median of a space-separated list of numbers.
med() {
    local -a list
    read -r -a list <<<"$1"
    lt_median "${list[@]}"
}
fmt_bytes() { awk -v b="$1" 'BEGIN { printf "%.0f\n", b }' | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'; }
report() {
    local v last
    echo "### Dashboard page load through each proxy (medians of $LOADS cold loads)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "Shim: ${DELAY_MS} ms each way ($((2 * DELAY_MS)) ms round trip), $( ((RATE_MBIT)) && echo "$RATE_MBIT Mbit/s" || echo "no cap") per direction."
    echo "Page: $js_info in 4 bundles, then $PANELS panel queries at once, each answered after $PANEL_MS ms."
    echo
    echo "| row | protocol seen | last panel answered | range | panel phase | bytes to the browser | connections | bundles encoded |"
    echo "|---|---|---:|---:|---:|---:|---:|---|"
    for v in "${rows[@]}"; do
        last=$(tr ' ' '\n' <<<"${t_last[$v]}" | sort -n | grep .)
        local seen=${protos[$v]# }
        [[ $seen == "${expect[$v]}" ]] || seen+=" (expected ${expect[$v]})"
        printf '| %s | %s | %s ms | %s–%s | %s ms | %s | %s | %s |\n' "$v" "$seen" "$(med "${t_last[$v]}")" \
            "$(head -1 <<<"$last")" "$(tail -1 <<<"$last")" "$(med "${t_panels[$v]}")" \
            "$(fmt_bytes "$(med "${b_down[$v]}")")" "$(med "${conns[$v]}")" "${encoding[$v]}"
    done
    for v in "${wanted[@]}" "${wanted[@]/%/+compress}"; do
        [[ -n ${note[$v]:-} ]] && echo "- $v: ${note[$v]}"
    done
    if ((COMPRESS)); then
        echo
        echo "| proxy | bytes to the browser, compression off | on | fewer bytes |"
        echo "|---|---:|---:|---:|"
        for v in "${rows[@]}"; do
            [[ $v == *+compress || -z ${b_down[$v+compress]:-} ]] && continue
            local off on
            off=$(med "${b_down[$v]}"); on=$(med "${b_down[$v+compress]}")
            printf '| %s | %s | %s | %s |\n' "$v" "$(fmt_bytes "$off")" "$(fmt_bytes "$on")" "$(lt_ratio "$off" "$on")"
        done
    fi
    echo
    echo "last panel answered: \`performance.now()\` when the last of the $PANELS panel fetches resolved, from"
    echo "the start of navigation (page, bundles, their parsing and the panel queries). panel phase: the same"
    echo "minus the moment the queries were fired (only the $PANELS queries). protocol seen: the"
    echo "\`nextHopProtocol\` most of the page's fetches report. bytes to the browser: relayed by the shim"
    echo "towards Chromium (TLS records included), connections: TCP connections Chromium opened."
    echo "Proxies: one worker each on core $LT_PROXY_CPU; backend (Python), shim and Chromium on core $LT_LOAD_CPU."
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cores, kernel $(uname -r);" \
        "load average at the start $load_start, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- nginx $nginx_version, $(command -v caddy >/dev/null && caddy version | awk '{print "Caddy " $1}'), $("$CHROMIUM" --version 2>/dev/null | awk '{print $1, $2}')"
    echo "- ringway tree: $(git -C "$LT_ROOT" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
    printf '%s' "${LT_READY_LINES:-}"
    echo
    echo "<details><summary>every load</summary>"
    echo
    echo "| load | row | protocol | last panel (ms) | queries fired (ms) | bytes to the browser | bytes to the proxy | connections |"
    echo "|---:|---|---|---:|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    echo "</details>"
}
outfile="$LT_OUT/dashboard-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
