#!/usr/bin/env python3
"""A small asyncio TCP echo server: an external server for scripts/compare.sh, and, with
--corrupt-every N, one that flips a bit of every N-th byte it echoes (to show a corrupting
server being caught); with --nagle, one that turns TCP_NODELAY off on the sockets it
accepts, as liburing's example leaves it (to show compare flagging it).

    python3 examples/python/echo.py --port 8000 [--corrupt-every N] [--nagle]
"""
import argparse
import asyncio
import socket


async def serve(reader, writer, corrupt_every, nagle):
    if nagle:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    seen = 0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if corrupt_every:
                buf = bytearray(data)
                for i in range(len(buf)):
                    if (seen + i) % corrupt_every == corrupt_every - 1:
                        buf[i] ^= 1
                data = bytes(buf)
            seen += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--corrupt-every", type=int, default=0)
    ap.add_argument("--nagle", action="store_true", help="TCP_NODELAY off on accepted sockets")
    args = ap.parse_args()
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args.corrupt_every, args.nagle),
        args.host,
        args.port,
        backlog=4096,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
