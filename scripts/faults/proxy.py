#!/usr/bin/env python3
"""A TCP proxy on loopback that a fault script can break (the shell twin of
tests/common/proxy.rs), for outages caused for real in PostgreSQL or Redis.

    python3 scripts/faults/proxy.py LISTEN_PORT UPSTREAM_HOST:PORT CONTROL_FILE &
    echo blackhole > CONTROL_FILE      # then: cut, up, "delay 80"

The proxy reads CONTROL_FILE (every 20 ms) for one word:
- up         forward. Connections opened or stalled during an outage are
             closed (what they sent is lost, so they could not be resumed).
- cut        the server is gone: open connections are closed, new ones are
             closed as soon as they are accepted.
- blackhole  the server hangs: connections, open and new, stay open and what
             the client sends is read and thrown away; nothing comes back.
- delay MS   forward, each chunk from the server held back MS milliseconds
             (a slow server, not a dead one).
It writes "ready" to CONTROL_FILE.state once listening, then the state it
applied after each change, so a script can wait for a change to take effect.
It listens on 127.0.0.1 only and runs until killed.
"""

import asyncio
import os
import sys


class Conn:
    """One client connection and, once connected, its server side."""

    def __init__(self, client):
        self.client = client
        self.server = None
        self.tainted = False  # opened or stalled during an outage


class Proxy:
    def __init__(self, upstream, control):
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.control = control
        self.state = "up"
        self.delay = 0.0
        self.conns = set()

    def applied(self, text):
        tmp = self.control + ".state.tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, self.control + ".state")

    async def watch(self):
        seen = None
        while True:
            try:
                with open(self.control) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                text = "up"
            if text and text != seen:
                seen = text
                self.change(text)
            await asyncio.sleep(0.02)

    def change(self, text):
        words = text.split()
        state = words[0]
        if state == "delay":
            self.delay = float(words[1]) / 1000 if len(words) > 1 else 0.0
            state = "up"
        elif state == "up":
            self.delay = 0.0
        if state not in ("up", "cut", "blackhole"):
            print(f"proxy: unknown control word {text!r}", file=sys.stderr)
            return
        self.state = state
        for conn in list(self.conns):
            if state == "cut" or (state == "up" and conn.tainted):
                self.close(conn)
            elif state == "blackhole":
                conn.tainted = True
        self.applied(text)

    def close(self, conn):
        self.conns.discard(conn)
        for w in (conn.client, conn.server):
            if w is not None:
                w.close()

    async def serve(self, reader, writer):
        conn = Conn(writer)
        if self.state == "cut":
            writer.close()
            return
        self.conns.add(conn)
        if self.state == "blackhole":
            conn.tainted = True
            await self.discard(reader, conn)
            return
        try:
            sreader, swriter = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.close(conn)
            return
        conn.server = swriter
        await asyncio.gather(
            self.pump(reader, swriter, conn, False), self.pump(sreader, writer, conn, True)
        )
        self.close(conn)

    async def discard(self, reader, conn):
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        self.close(conn)

    async def pump(self, reader, writer, conn, from_server):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if conn.tainted:
                    continue  # black-holed: read and thrown away
                if from_server and self.delay:
                    await asyncio.sleep(self.delay)
                    if conn.tainted or conn not in self.conns:
                        continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        if not conn.tainted:
            self.close(conn)


async def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listen, upstream, control = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    proxy = Proxy(upstream, control)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", listen)
    proxy.applied("ready")
    async with server:
        await asyncio.gather(server.serve_forever(), proxy.watch())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
