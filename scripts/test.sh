#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (curl, used as a real
# client by some tests; chromium, which loads the status page and a page over HTTP/2; h2load from
# nghttp2-client, which loads ringway over HTTP/2), then runs unit, integration and
# doc tests. The runtime driver follows the environment: MONOIO_FORCE_LEGACY_DRIVER=1 forces
# epoll instead of io_uring.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Headless Chromium loads the admin status page in tests/observe.rs.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# h2load sends a few thousand HTTP/2 requests in tests/http2.rs.
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
# Installed above, so the status page test must not skip for want of a browser.
export RINGWAY_REQUIRE_CHROMIUM=1
export RINGWAY_REQUIRE_H2LOAD=1

driver="io_uring"
[ -n "${MONOIO_FORCE_LEGACY_DRIVER:-}" ] && driver="epoll (MONOIO_FORCE_LEGACY_DRIVER)"
echo "test.sh: running the suite with the $driver driver" >&2
# All targets: benches run once in test mode as a smoke check. RUST_TEST_THREADS (not a
# `--test-threads` argument, which criterion benches reject) bounds parallel tests.
RUST_TEST_THREADS="${TEST_THREADS:-4}" cargo test --locked --all-targets --no-fail-fast
