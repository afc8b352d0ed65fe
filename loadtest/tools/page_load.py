#!/usr/bin/env python3
"""Load one page in headless Chromium with a fresh profile and print what the page measured.

    page_load.py URL [--timeout 60] [--chromium /usr/bin/chromium]

The page (tools/dashboard_backend.py) writes a JSON object into <pre id="result"> when it is done;
this prints that object on stdout and exits 0, or says on stderr why not and exits 1. Chromium is
driven over its DevTools pipe (--remote-debugging-pipe: NUL-terminated JSON on fds 3 and 4), so no
WebSocket client is needed. Each run gets a new profile directory (cold cache, no stored
certificates decisions or alternative services) that is removed afterwards; QUIC is off, so
every byte goes over the TCP connection the caller points at.
"""
import argparse
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FLAGS = ("--headless=new", "--remote-debugging-pipe", "--ignore-certificate-errors",
         "--disable-quic", "--no-first-run", "--no-default-browser-check", "--disable-gpu",
         "--disable-extensions", "--disable-sync", "--disable-background-networking",
         "--disable-component-update", "--disable-default-apps", "--disable-dev-shm-usage",
         "--no-proxy-server", "--mute-audio")
RESULT = "(document.getElementById('result') || {}).textContent || ''"


class Pipe:
    """The DevTools protocol over Chromium's pipe: send a command, wait for its answer."""

    def __init__(self, to_browser, from_browser, deadline):
        self.w, self.r, self.deadline = to_browser, from_browser, deadline
        self.buf, self.next_id = b"", 0

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def read(self):
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium in time")
            chunk = os.read(self.r, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe (it exited)")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)


def load(url, chromium, timeout):
    deadline = time.monotonic() + timeout
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    # Chromium reads commands on fd 3 and writes answers on fd 4. Its ends are first moved above
    # 9 (close-on-exec), so putting them on 3 and 4 in the child cannot overwrite one another.
    cmd_r, cmd_w = os.pipe()
    ans_r, ans_w = os.pipe()
    child_ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, ans_w)]
    os.close(cmd_r)
    os.close(ans_w)

    def child_fds():
        os.dup2(child_ends[0], 3)
        os.dup2(child_ends[1], 4)

    args = [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    with open(os.path.join(profile, "stderr.log"), "w") as err:
        # close_fds=False: Python's own fds are close-on-exec anyway, and closing would drop 3 and 4.
        proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    for fd in child_ends:
        os.close(fd)
    pipe = Pipe(cmd_w, ans_r, deadline)
    try:
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        pipe.call("Page.navigate", session, url=url)
        while True:  # the page fills #result once its last panel answered
            got = pipe.call("Runtime.evaluate", session, expression=RESULT, returnByValue=True)
            text = got.get("result", {}).get("value") or ""
            if text:
                return json.loads(text)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page wrote no result within {timeout} s")
            time.sleep(0.1)
    finally:
        try:
            pipe.deadline = time.monotonic() + 5
            pipe.call("Browser.close")
            proc.wait(5)
        except Exception:
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the browser and its children
            proc.wait()
        os.close(cmd_w)
        os.close(ans_r)
        shutil.rmtree(profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    try:
        result = load(args.url, args.chromium, args.timeout)
    except (OSError, RuntimeError, TimeoutError, ValueError) as e:
        print(f"page_load: {args.url}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
