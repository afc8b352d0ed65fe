"""Minimal upgrade backend for the idle-tunnel load test: answers every request with
101 Switching Protocols and then holds the connection open, reading until the peer closes."""
import asyncio
import base64
import hashlib
import re
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        # A real handshake: HAProxy checks Sec-WebSocket-Accept against the key.
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        accept = base64.b64encode(hashlib.sha1((key.group(1) if key else b"") + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        while await reader.read(65536):
            pass
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()


asyncio.run(main())
