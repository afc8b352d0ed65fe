# shellcheck shell=bash
# Shared functions of ringway's load-test scripts (http.sh, ws_idle.sh, ws_echo.sh, body.sh).
# Source it from a script that has `set -euo pipefail`; every function is prefixed `lt_`.
#
# Layout of a run: a backend and the proxies run as background processes tracked in LT_PIDS;
# their configs and logs live in a fresh temp dir ($LT_TMP); an EXIT trap stops them all,
# so Ctrl-C, a failed command or a normal end all leave nothing running.

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LT_ROOT=$(cd "$LT_DIR/.." && pwd)
LT_OUT="$LT_DIR/out"
# nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# Cores: proxies share core 0 (ringway pins its worker 0 there itself); backend and load
# generator get core 1, so a proxy never competes with the traffic it is measured under.
LT_PROXY_CPU=${LT_PROXY_CPU:-0}
LT_LOAD_CPU=${LT_LOAD_CPU:-1}

LT_PIDS=()

lt_log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lt_die() { lt_log "error: $*"; exit 1; }

# --- setup and teardown -------------------------------------------------------------------

# lt_init: temp dir, out dir, and the cleanup trap. Call once, before starting anything.
lt_init() {
    LT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringway-loadtest.XXXXXX")
    mkdir -p "$LT_OUT"
    trap lt_cleanup EXIT
    # Turn signals into a normal exit so the EXIT trap runs exactly once.
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}

# lt_cleanup: stop every tracked process and its descendants (nginx workers), TERM first,
# then KILL whatever is still there after a grace period.
lt_cleanup() {
    local rc=$? pid all=() p
    trap - EXIT INT TERM HUP
    for pid in "${LT_PIDS[@]}"; do
        # Collect descendants before the parent goes: an orphaned worker is re-parented to init.
        all+=($(lt_proc_tree "$pid"))
    done
    if ((${#all[@]})); then
        kill -TERM "${all[@]}" 2>/dev/null || true
        for _ in $(seq 50); do
            local alive=0
            for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            ((alive)) || break
            sleep 0.1
        done
        kill -KILL "${all[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
    fi
    if [[ -n "${LT_TMP:-}" && -d "$LT_TMP" ]]; then
        # Keep configs and logs when something failed (not on success or Ctrl-C), or on request.
        if ((rc == 0 || rc == 130 || rc == 143)) && [[ -z "${KEEP_TMP:-}" ]]; then
            rm -rf "$LT_TMP"
        else
            lt_log "logs and configs kept in $LT_TMP"
        fi
    fi
    exit "$rc"
}

# lt_require_tools CMD...: install the Debian packages of the same names when a command is
# missing; a no-op when all are present. apt-get update runs only when something is missing.
lt_require_tools() {
    local missing=() t
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]})) || return 0
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    lt_log "installing ${missing[*]} (apt-get)"
    "${sudo[@]}" apt-get update -qq
    # policy-rc.d-free containers just fail to start the packaged services; that is fine:
    # we never use the system instances, only our own configs on our own ports.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    for t in "${missing[@]}"; do command -v "$t" >/dev/null 2>&1 || lt_die "$t still missing after install"; done
}

# lt_ringway_bin: prints the ringway binary; builds it with cargo unless RINGWAY_BIN is set.
lt_ringway_bin() {
    if [[ -n "${RINGWAY_BIN:-}" ]]; then
        [[ -x "$RINGWAY_BIN" ]] || lt_die "RINGWAY_BIN=$RINGWAY_BIN is not executable"
        echo "$RINGWAY_BIN"
        return
    fi
    lt_log "building ringway (cargo build --release in $LT_ROOT)"
    (cd "$LT_ROOT" && cargo build --release --quiet) >&2 || lt_die "cargo build failed"
    echo "${CARGO_TARGET_DIR:-$LT_ROOT/target}/release/ringway"
}

# --- processes -----------------------------------------------------------------------------

# lt_spawn NAME CPU CMD...: start CMD pinned to CPU, stdout+stderr to $LT_TMP/NAME.log, tracked
# for cleanup. taskset execs, so the pid is the program's own. Sets LT_LAST_PID.
lt_spawn() {
    local name=$1 cpu=$2; shift 2
    taskset -c "$cpu" "$@" >"$LT_TMP/$name.log" 2>&1 &
    LT_LAST_PID=$!
    LT_PIDS+=("$LT_LAST_PID")
}

# lt_port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
lt_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# lt_free_port VAR: sets VAR to a port on 127.0.0.1 that nothing listens on and that this run
# has not handed out yet (a variable, not stdout: a $(...) subshell would forget the used list).
lt_free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        [[ " ${LT_USED_PORTS:-} " == *" $p "* ]] && continue
        if ! lt_port_open "$p"; then
            LT_USED_PORTS="${LT_USED_PORTS:-} $p"
            printf -v "$1" '%s' "$p"
            return
        fi
    done
    lt_die "no free port found"
}

# lt_wait_ready NAME PID PORT: wait until PORT accepts connections; fail with the log's tail
# if the process died or did not get there within 10 s.
lt_wait_ready() {
    local name=$1 pid=$2 port=$3
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LT_TMP/$name.log" >&2; lt_die "$name exited during start-up"; }
        lt_port_open "$port" && return 0
        sleep 0.05
    done
    tail -n 20 "$LT_TMP/$name.log" >&2
    lt_die "$name did not listen on 127.0.0.1:$port within 10 s"
}

# lt_proc_tree PID: prints PID and all its descendants (nginx master → workers).
lt_proc_tree() {
    local pid=$1 c
    kill -0 "$pid" 2>/dev/null || return 0
    echo "$pid"
    for c in $(pgrep -P "$pid" 2>/dev/null || true); do lt_proc_tree "$c"; done
}

# lt_proxy_gone NAME WHAT: true when proxy NAME (started by lt_start_proxy) has exited; then logs
# "NAME (pid P) WHAT" and the last lines of its log, so a dead proxy is reported, not measured.
lt_proxy_gone() {
    local pid=${LT_PROXY_PID[$1]}
    kill -0 "$pid" 2>/dev/null && return 1
    lt_log "$1 (pid $pid) $2; last log lines:"
    tail -n 20 "$LT_TMP/$1.log" >&2
    return 0
}

# lt_cpu_ns PID: nanoseconds on CPU of PID's whole process tree, every thread: the first
# field of /proc/P/task/T/schedstat. Stable to about ±8% here, unlike req/s (DESIGN.md).
lt_cpu_ns() {
    local p files=()
    for p in $(lt_proc_tree "$1"); do files+=(/proc/"$p"/task/*/schedstat); done
    # A thread may exit between the glob and the read; its time is lost either way.
    cat "${files[@]}" 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# lt_cpu_ns_total PID: like lt_cpu_ns, but from /proc/P/stat (utime + stime, clock ticks), which
# also counts threads that already exited: for backends that run a thread per connection. Coarser
# (10 ms ticks), so use it over runs of seconds.
lt_cpu_ns_total() {
    local p
    for p in $(lt_proc_tree "$1"); do
        # Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
        sed 's/.*) //' "/proc/$p/stat" 2>/dev/null
    done | awk -v hz="$LT_CLK_TCK" '{ s += $12 + $13 } END { printf "%.0f\n", s * 1e9 / hz }'
}

# lt_core_ticks CPU: prints "BUSY STEAL" clock ticks of one core from /proc/stat (busy = user,
# nice, system, irq, softirq). Busy minus the proxy's own time = other work that shared its core.
lt_core_ticks() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $9; exit }' /proc/stat
}
LT_CLK_TCK=$(getconf CLK_TCK)

# --- nginx configs (backend and proxy share the boilerplate) ----------------------------------

# lt_nginx_conf DIR WORKER_AFFINITY HTTP_BODY: writes DIR/nginx.conf for a foreground nginx
# whose every path (pid, logs, temp files) is under DIR: no system config, no root-owned paths.
lt_nginx_conf() {
    local dir=$1 affinity=$2 http_body=$3 user=""
    mkdir -p "$dir/logs" "$dir/tmp"
    # As root, nginx would switch workers to "nobody"; keep the invoking user instead.
    ((EUID == 0)) && user="user $(id -un) $(id -gn);"
    cat >"$dir/nginx.conf" <<EOF
$user
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $affinity;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # Default 1000 would close every client connection after 1000 requests.
    keepalive_requests 10000000;
    keepalive_timeout 75s;
$http_body
}
EOF
}

# lt_nginx_run NAME CPU DIR: start nginx on DIR/nginx.conf (-e: error log before the config is read).
lt_nginx_run() {
    local name=$1 cpu=$2 dir=$3
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$LT_TMP/$name.check" 2>&1 ||
        { cat "$LT_TMP/$name.check" >&2; lt_die "$name: nginx config rejected"; }
    lt_spawn "$name" "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
}

# lt_start_backend_nginx PORT SERVER_BODY: the backend nginx, one worker on the load core.
# SERVER_BODY is the inside of its server{} (e.g. a `return 200 "..."`, or a root for files).
lt_start_backend_nginx() {
    local port=$1 server_body=$2 dir="$LT_TMP/backend"
    lt_nginx_conf "$dir" "$(lt_affinity_mask "$LT_LOAD_CPU")" "
    server {
        listen 127.0.0.1:$port backlog=4096;
        $server_body
    }"
    lt_nginx_run backend "$LT_LOAD_CPU" "$dir"
    LT_BACKEND_PID=$LT_LAST_PID
    lt_wait_ready backend "$LT_BACKEND_PID" "$port"
}

# lt_affinity_mask CPU: nginx's worker_cpu_affinity bitmask for one cpu (0 -> 01, 1 -> 10).
lt_affinity_mask() {
    local cpu=$1 mask="1"
    for _ in $(seq "$cpu"); do mask="${mask}0"; done
    printf '%02d\n' "$mask"
}

# lt_tls_cert DIR: a self-signed ECDSA P-256 certificate for 127.0.0.1 / localhost in
# DIR/cert.pem and DIR/key.pem (PKCS#8), the one every proxy of a TLS run presents.
lt_tls_cert() {
    local dir=$1
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || lt_die "openssl could not make a certificate"
    # HAProxy wants the chain and key in one file.
    cat "$dir/cert.pem" "$dir/key.pem" >"$dir/both.pem"
}

# --- the three proxies -----------------------------------------------------------------------
# Each starts with one worker pinned to LT_PROXY_CPU, listens on PORT, forwards everything to
# 127.0.0.1:BACKEND over pooled keep-alive connections, and does the same header work as
# ringway's defaults: keeps Host, sets X-Forwarded-For/-Proto/-Host/-Port and X-Real-IP.
# EXTRA is appended inside the proxy's route block (location / backend / [[route]]), so the
# WebSocket and large-body scripts can add e.g. Upgrade handling or buffering settings.
# With LT_TLS_DIR set (a directory made by lt_tls_cert), each listens with TLS 1.3 only, presenting
# that certificate, without session resumption (tickets and caches off), and sends
# X-Forwarded-Proto https. Each sets LT_LAST_PID to the proxy's top process.

lt_start_proxy_nginx() {
    local port=$1 backend=$2 extra=${3:-} name=${LT_NGINX_NAME:-nginx} ssl="" tls=""
    local dir="$LT_TMP/$name"
    if [[ -n ${LT_TLS_DIR:-} ]]; then
        ssl=" ssl"
        tls="ssl_certificate $LT_TLS_DIR/cert.pem;
        ssl_certificate_key $LT_TLS_DIR/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_tickets off;
        ssl_session_cache off;"
    fi
    lt_nginx_conf "$dir" "$(lt_affinity_mask "$LT_PROXY_CPU")" "
    # Made like ringway's (process, then counters; no random bytes): \$request_id would read 16
    # random bytes per request, which costs nginx about 2 µs here.
    map \$http_x_request_id \$reqid {
        default \$http_x_request_id;
        \"\" \$pid-\$connection-\$connection_requests;
    }
    upstream backend {
        server 127.0.0.1:$backend;
        keepalive ${LT_NGINX_KEEPALIVE:-256};
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$port backlog=4096$ssl${LT_NGINX_LISTEN:-};
        $tls
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection ${LT_NGINX_CONNECTION:-\"\"};
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_set_header X-Real-IP \$remote_addr;
            # ringway always sends one (the client's, or one it makes): the same work here.
            proxy_set_header X-Request-Id \$reqid;
            $extra
        }
    }"
    lt_nginx_run "$name" "$LT_PROXY_CPU" "$dir"
    lt_wait_ready "$name" "$LT_LAST_PID" "$port"
}

lt_start_proxy_haproxy() {
    local port=$1 backend=$2 extra=${3:-} name=${LT_HAPROXY_NAME:-haproxy} ssl="" proto=http
    local cfg="$LT_TMP/$name.cfg"
    if [[ -n ${LT_TLS_DIR:-} ]]; then
        ssl=" ssl crt $LT_TLS_DIR/both.pem ssl-min-ver TLSv1.3 no-tls-tickets"
        proto=https
    fi
    cat >"$cfg" <<EOF
global
    nbthread 1
    # no maxconn: HAProxy derives it from the open-files limit (20000 here, not raisable)
    cpu-map 1/1 $LT_PROXY_CPU
    tune.ssl.cachesize 0

defaults
    mode http
    unique-id-format %{+X}o%ci-%cp-%Ts-%rt-%pid
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s

frontend fe
    bind 127.0.0.1:$port$ssl ${LT_HAPROXY_BIND:-}
    default_backend be

backend be
    http-reuse always
    option forwardfor
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Real-IP %[src]
    # ringway always sends one (the client's, or one it makes): the same work here.
    http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }
    $extra
    server s1 127.0.0.1:$backend
EOF
    haproxy -c -q -f "$cfg" >"$LT_TMP/$name.check" 2>&1 ||
        { cat "$LT_TMP/$name.check" >&2; lt_die "$name config rejected"; }
    # -db: stay in the foreground, one process, so LT_LAST_PID is the whole proxy.
    lt_spawn "$name" "$LT_PROXY_CPU" haproxy -db -f "$cfg"
    lt_wait_ready "$name" "$LT_LAST_PID" "$port"
}

lt_start_proxy_ringway() {
    local port=$1 backend=$2 extra=${3:-} name=${LT_RINGWAY_NAME:-ringway} tls=""
    local cfg="$LT_TMP/$name.toml" wrap=()
    # rustls speaks TLS 1.2 and 1.3; the clients here all pick 1.3.
    [[ -n ${LT_TLS_DIR:-} ]] && tls="[[listener.tls]]
cert = \"$LT_TLS_DIR/cert.pem\"
key = \"$LT_TLS_DIR/key.pem\""
    [[ -n "${LT_RINGWAY:-}" ]] || LT_RINGWAY=$(lt_ringway_bin)
    local bin=${LT_RINGWAY_BIN_OVERRIDE:-$LT_RINGWAY}
    [[ -n ${LT_RINGWAY_SECCOMP:-} ]] && wrap=(python3 "$LT_DIR/tools/no_uring.py")
    # workers = 1: ringway pins worker 0 to core 0 itself; taskset keeps its other threads there too.
    cat >"$cfg" <<EOF
[server]
workers = 1
${LT_RINGWAY_SERVER:-}

[[listener]]
bind = "127.0.0.1:$port"
${LT_RINGWAY_LISTENER:-}
$tls

[upstream.backend]
servers = ["127.0.0.1:$backend"]
${LT_RINGWAY_UPSTREAM:-}

[[route]]
prefix = "/"
upstream = "backend"
$extra
EOF
    lt_spawn "$name" "$LT_PROXY_CPU" "${wrap[@]}" "$bin" --config "$cfg"
    lt_wait_ready "$name" "$LT_LAST_PID" "$port"
    # The driver it really runs on, for the report (the ready line follows the listening line).
    local ready=""
    for _ in $(seq 50); do
        ready=$(grep -m1 '^ringway: ready' "$LT_TMP/$name.log" || true)
        [[ -n $ready ]] && break
        sleep 0.05
    done
    LT_READY_LINES+="- $name: \`${ready:-no ready line}\`"$'\n'
}

# The same ringway with io_uring blocked as a container's default seccomp profile blocks it
# (tools/no_uring.py: no-new-privs, then a BPF filter answering EPERM to io_uring_setup, then exec).
lt_start_proxy_ringway_seccomp() {
    LT_RINGWAY_NAME=ringway_seccomp LT_RINGWAY_SECCOMP=1 lt_start_proxy_ringway "$@"
}

# The same ringway on epoll by configuration (`[server] io_driver = "epoll"`).
lt_start_proxy_ringway_epoll() {
    LT_RINGWAY_NAME=ringway_epoll LT_RINGWAY_SERVER='io_driver = "epoll"' lt_start_proxy_ringway "$@"
}

# Another ringway build beside this one (RINGWAY_BASE_BIN, for example the binary of an earlier
# commit), so a change is measured before and after in the same run.
lt_start_proxy_ringway_base() {
    [[ -x ${RINGWAY_BASE_BIN:-} ]] || lt_die "ringway_base needs RINGWAY_BASE_BIN, an executable ringway"
    LT_RINGWAY_NAME=ringway_base LT_RINGWAY_BIN_OVERRIDE=$RINGWAY_BASE_BIN lt_start_proxy_ringway "$@"
}

# lt_start_proxy NAME PORT BACKEND [EXTRA]: dispatch by name; records the pid in LT_PROXY_PID[NAME].
declare -A LT_PROXY_PID=()
lt_start_proxy() {
    local name=$1; shift
    "lt_start_proxy_$name" "$@"
    LT_PROXY_PID[$name]=$LT_LAST_PID
}

# --- load generation and parsing -------------------------------------------------------------

# lt_to_us VALUE: wrk's "812.00us" / "1.23ms" / "2.01s" -> microseconds.
lt_to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000
        else if (u == "m") m = 60000000; else m = 1
        printf "%.1f\n", n * m }'
}

# lt_wrk_parse FILE: prints "requests rps p50_us p99_us errors" from `wrk --latency` output.
# errors = non-2xx/3xx responses + socket errors (connect, read, write, timeout).
lt_wrk_parse() {
    local f=$1 req rps p50 p99 err
    req=$(awk '/requests in/ { print $1; exit }' "$f")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$f")
    p50=$(lt_to_us "$(awk '$1 == "50%" { print $2; exit }' "$f")")
    p99=$(lt_to_us "$(awk '$1 == "99%" { print $2; exit }' "$f")")
    err=$(awk '/Non-2xx or 3xx responses:/ { s += $NF }
               /Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i + 0 }
               END { print s + 0 }' "$f")
    [[ -n "$req" && -n "$rps" ]] || { cat "$f" >&2; lt_die "could not parse wrk output $f"; }
    echo "$req $rps $p50 $p99 $err"
}

# lt_run_bg CMD...: run a foreground-like command in the background and wait for it, so a
# signal reaches our trap at once instead of after the command ends.
lt_run_bg() {
    "$@" &
    local pid=$! rc=0
    LT_PIDS+=("$pid")
    wait "$pid" || rc=$?
    # Forget it once reaped, so cleanup can never signal a recycled pid.
    unset 'LT_PIDS[-1]'
    return "$rc"
}

# --- statistics and output -------------------------------------------------------------------

# lt_median N...: median of the numbers (mean of the middle two for an even count).
lt_median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# lt_ratios "A1 A2 ..." "B1 B2 ...": A_i / B_i, one per line to two decimals (nothing if the
# lists differ in length).
lt_ratios() {
    awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); if (n != split(b, y, " ")) exit
        for (i = 1; i <= n; i++) if (y[i] > 0) printf "%.2f\n", x[i] / y[i] }'
}

# lt_paired WHAT ARRAY PROXY...: a line giving each proxy's ratio to nginx paired by round, from
# ARRAY[proxy] (one value per round, space-separated): median and range. Each round runs the
# proxies back to back, so a round's ratio cancels the host's slow drift (the backend's own CPU
# per request moves by a third between rounds here); the ratio of the medians does not. A proxy
# that missed a round (it died) is left out.
lt_paired() {
    local what=$1 p line="" ratios
    local -n vals=$2
    shift 2
    [[ -n ${vals[nginx]:-} ]] || return 0
    for p in "$@"; do
        [[ $p == nginx || -z ${vals[$p]:-} ]] && continue
        ratios=$(lt_ratios "${vals[$p]}" "${vals[nginx]}" | sort -g)
        [[ -n $ratios ]] || continue
        line+="${line:+; }$p median $(lt_median $ratios | awk '{ printf "%.2f", $1 }')× (rounds: $(head -1 <<<"$ratios")–$(tail -1 <<<"$ratios"))"
    done
    [[ -z $line ]] || printf '%s vs nginx, paired by round: %s.\n\n' "$what" "$line"
}

# lt_fmt_us US: latency for a table: "850 µs" below 1 ms, else "1.23 ms".
lt_fmt_us() {
    awk -v v="$1" 'BEGIN { if (v < 1000) printf "%.0f µs\n", v; else printf "%.2f ms\n", v / 1000 }'
}

# lt_machine_info: a few lines saying where and with what a table was measured.
lt_machine_info() {
    local rw
    rw=$(git -C "$LT_ROOT" log -1 --format='%h %s' 2>/dev/null || echo unknown)
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cores, kernel $(uname -r)"
    echo "- nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy " $3}'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')"
    echo "- ringway tree: $rw${MONOIO_FORCE_LEGACY_DRIVER:+ (MONOIO_FORCE_LEGACY_DRIVER=$MONOIO_FORCE_LEGACY_DRIVER)}"
    printf '%s' "${LT_READY_LINES:-}"
}

# --- result data ------------------------------------------------------------------------------

# lt_csv_open NAME COMMAND: starts loadtest/out/NAME-<date>.csv, the rows behind a script's table
# in the form loadtest/charts.py reads (one row per run and metric). Copy the file to
# loadtest/results/YYYY-MM-DD-NAME.csv to put the run in the charts.
lt_csv_open() {
    LT_CSV="$LT_OUT/$1-$(date -u +%Y%m%d-%H%M%S).csv"
    LT_CSV_DATE=$(date -u +%Y-%m-%dT%H:%MZ)
    LT_CSV_CMD=${2//\"/\"\"}
    LT_CSV_TREE=$(git -C "$LT_ROOT" rev-parse --short HEAD 2>/dev/null || true)
    echo "date,command,tree,round,proxy,metric,value" >"$LT_CSV"
}

# lt_csv_row ROUND PROXY METRIC VALUE: one measured figure of one run.
lt_csv_row() {
    printf '%s,"%s",%s,%s,%s,%s,%s\n' "$LT_CSV_DATE" "$LT_CSV_CMD" "$LT_CSV_TREE" "$1" "$2" "$3" "$4" >>"$LT_CSV"
}

# --- tools and measurements shared by the WebSocket and body scripts ---------------------------

# lt_build_tool NAME: compiles loadtest/tools/NAME.rs (std only) with rustc -O into $LT_TMP and
# prints the binary's path. Call after lt_init and before starting anything to be measured.
lt_build_tool() {
    local name=$1 out="$LT_TMP/$1"
    command -v rustc >/dev/null || lt_die "rustc not found (needed to build tools/$name.rs)"
    rustc --edition 2021 -O "$LT_DIR/tools/$name.rs" -o "$out" >&2 || lt_die "building tools/$name.rs failed"
    echo "$out"
}

# lt_ratio A B: "0.42×" (A / B), or "—" when B is empty or zero.
lt_ratio() {
    [[ -n ${2:-} ]] || { echo "—"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×\n", a / b }'
}

# lt_ws_proxy NAME PORT BACKEND: starts a proxy configured to carry WebSocket upgrades with an
# hour of idle time allowed (nginx needs the Upgrade/Connection headers passed on explicitly).
lt_ws_proxy() {
    local name=$1 port=$2 backend=$3
    case $name in
        nginx)
            LT_NGINX_CONNECTION=upgrade lt_start_proxy nginx "$port" "$backend" \
                'proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 1h;' ;;
        haproxy) lt_start_proxy haproxy "$port" "$backend" 'timeout tunnel 1h' ;;
        ringway) lt_start_proxy ringway "$port" "$backend" ;;
        *) lt_die "unknown proxy '$name'" ;;
    esac
}

# lt_counts [--positive] VAR...: dies unless each named variable holds a whole number (> 0 with
# --positive).
lt_counts() {
    local min=0 v
    [[ $1 == --positive ]] && { min=1; shift; }
    for v in "$@"; do
        [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} >= min)) ||
            lt_die "$v must be a whole number$( ((min)) && echo " > 0"), got '${!v}'"
    done
}

# lt_cmdline_env: the settings besides the counts that change what runs (another binary, the
# epoll driver), as `NAME=value ` words to put before a script's name in its report.
lt_cmdline_env() {
    local v
    for v in PROXIES RINGWAY_BIN MONOIO_FORCE_LEGACY_DRIVER; do
        [[ -n ${!v:-} ]] || continue
        [[ $v == PROXIES && ${!v} == "${LT_DEFAULT_PROXIES:-}" ]] && continue
        if [[ ${!v} == *" "* ]]; then printf '%s="%s" ' "$v" "${!v}"; else printf '%s=%s ' "$v" "${!v}"; fi
    done
    return 0
}

# lt_rounds FUNCTION: ROUNDS rounds over the array `proxies`, each round starting one proxy later
# than the one before, so the host's drifting noise lands on every proxy alike and ratios can be
# paired by round. Calls FUNCTION ROUND PROXY, ROUND counted from 1.
lt_rounds() {
    local r i n=${#proxies[@]}
    for ((r = 0; r < ROUNDS; r++)); do
        for ((i = 0; i < n; i++)); do
            "$1" $((r + 1)) "${proxies[$(((i + r) % n))]}"
        done
    done
}

# lt_check_proxies LIST: dies unless every name in LIST is nginx, haproxy, ringway or one of
# ringway's variants (ringway_seccomp, ringway_epoll, ringway_base).
lt_check_proxies() {
    local p
    for p in $1; do
        [[ $p =~ ^(nginx|haproxy|ringway|ringway_seccomp|ringway_epoll|ringway_base)$ ]] || lt_die "unknown proxy '$p' in PROXIES"
    done
}
