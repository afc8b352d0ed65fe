#!/usr/bin/env python3
"""A loopback stand-in for a slow network (tc netem is not available here): a TCP relay that
delays each direction and caps its throughput, and counts the bytes it relays.

    latency_shim.py --listen PORT --target PORT [--delay-ms 20] [--rate-mbit 50]

Each direction is one link shared by every connection, as a user's access line is: data waits
for the link (FIFO, RATE_MBIT; 0 = no cap), then DELAY_MS of propagation. A new connection also
pays the round trip of the TCP handshake (the relay accepts at once on loopback), so its first
bytes reach the target 1.5 round trips after the client connected. Not modelled: loss, TCP slow
start, a bounded queue.

Totals are printed on SIGUSR1 and on exit (SIGTERM, SIGINT) as one line:
    shim: to_server=BYTES to_client=BYTES connections=N
where a connection counts once it has sent a byte (a bare port probe does not).
"""
import argparse
import asyncio
import signal
import sys

CHUNK = 16 * 1024  # pacing granularity: 16 KiB is 2.6 ms at 50 Mbit/s


class Link:
    """One direction: a FIFO line of a fixed rate followed by a fixed delay."""

    def __init__(self, rate_mbit, delay):
        self.byte_time = 8 / (rate_mbit * 1e6) if rate_mbit > 0 else 0.0
        self.delay = delay
        self.free_at = 0.0
        self.bytes = 0

    def arrival(self, now, size):
        """When SIZE bytes handed to the link NOW reach the far end."""
        start = max(now, self.free_at)
        self.free_at = start + size * self.byte_time
        return self.free_at + self.delay


class Shim:
    def __init__(self, target, rate_mbit, delay):
        self.target = target
        self.up = Link(rate_mbit, delay)
        self.down = Link(rate_mbit, delay)
        self.connections = 0

    def totals(self):
        return f"shim: to_server={self.up.bytes} to_client={self.down.bytes} connections={self.connections}"

    async def handle(self, c_reader, c_writer):
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        try:
            first = await c_reader.read(CHUNK)
            upstream = await asyncio.open_connection("127.0.0.1", self.target) if first else None
        except OSError:
            upstream = None
        if upstream is None:
            c_writer.close()
            return
        self.connections += 1
        s_reader, s_writer = upstream
        # SYN and SYN-ACK take a round trip the relay skipped: the first bytes could not have
        # left the client before accept + 2 × delay, so they arrive at accept + 3 × delay.
        not_before = accepted + 3 * self.up.delay
        await asyncio.gather(
            self.pump(c_reader, s_writer, self.up, first, not_before),
            self.pump(s_reader, c_writer, self.down, b"", 0.0),
        )
        c_writer.close()
        s_writer.close()

    async def pump(self, reader, writer, link, first, not_before):
        """Relay one direction through LINK, keeping the order of the chunks."""
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        async def deliver():
            try:
                while True:
                    at, data = await queue.get()
                    if data is None:
                        break
                    wait = at - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()
                    link.bytes += len(data)
                if writer.can_write_eof():
                    writer.write_eof()
            except OSError:
                writer.close()

        sender = asyncio.create_task(deliver())
        last = not_before
        data = first
        try:
            while True:
                if data:
                    last = max(last, link.arrival(loop.time(), len(data)))
                    queue.put_nowait((last, data))
                data = await reader.read(CHUNK)
                if not data:
                    break
        except OSError:
            pass
        queue.put_nowait((0.0, None))
        await sender


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--rate-mbit", type=float, default=50)
    args = ap.parse_args()

    shim = Shim(args.target, args.rate_mbit, args.delay_ms / 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(shim.totals(), flush=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(shim.handle, "127.0.0.1", args.listen, backlog=256)
    print(f"shim: 127.0.0.1:{args.listen} -> 127.0.0.1:{args.target}, "
          f"{args.delay_ms} ms each way, {args.rate_mbit or 'no'} Mbit/s cap", flush=True)
    await stop.wait()
    server.close()
    print(shim.totals(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
