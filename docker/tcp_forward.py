"""Forward TCP connections: LISTEN_HOST:PORT -> TARGET_HOST:PORT (scripts/test-docker's stand-ins).

The test machine's PostgreSQL and Redis listen on loopback only; the stack's containers sit on their
compose network. A stand-in on the host network forwards from the network's gateway address to them.

    python3 tcp_forward.py 172.31.213.1:5432 127.0.0.1:5432
"""

import asyncio
import sys


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(listen: str, target: str):
    target_host, target_port = target.rsplit(":", 1)

    async def connected(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))

    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(connected, host, int(port), reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
