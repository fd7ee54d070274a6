"""The fault proxy the cache fault tests rely on, against a loopback echo server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.integration.fault_proxy import FaultProxy

TIMEOUT = 5.0


class Echo:
    """An upstream that echoes every byte and keeps what it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    upstream = Echo()
    upstream.server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    upstream.port = int(upstream.server.sockets[0].getsockname()[1])
    yield upstream
    upstream.server.close()
    await upstream.server.wait_closed()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo.port) as running_proxy:
        yield running_proxy


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    data: bytes) -> bytes:
    writer.write(data)
    return await asyncio.wait_for(reader.readexactly(len(data)), TIMEOUT)


async def test_pass_through_forwards_both_ways(proxy: FaultProxy, echo: Echo) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"hello") == b"hello"
    assert bytes(echo.received) == b"hello" and proxy.accepted == 1
    writer.close()


async def test_latency_delays_each_direction_and_keeps_order(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"warm") == b"warm"
    proxy.latency(0.15)
    start = time.monotonic()
    writer.write(b"one,")
    await asyncio.sleep(0.05)
    writer.write(b"two,")
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"one,"
    assert time.monotonic() - start >= 0.29  # 0.15 out + 0.15 back
    # A delay line: the second chunk did not wait for the first one's delay on top of its own.
    proxy.pass_through()
    writer.write(b"three")
    assert await asyncio.wait_for(reader.readexactly(9), TIMEOUT) == b"two,three"
    assert time.monotonic() - start < 0.29 + 0.15 + 1.0
    writer.close()


async def test_blackhole_reads_but_never_answers_and_stays_poisoned(
        proxy: FaultProxy, echo: Echo) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    proxy.blackhole()
    writer.write(b"MGET lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)
    assert bytes(echo.received) == b"ok" and proxy.seen[b"MGET"] == 1
    fresh_reader, fresh_writer = await connect(proxy)  # new ones are accepted, then ignored
    fresh_writer.write(b"PING")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fresh_reader.read(1), 0.2)
    # Lifting the fault does not revive a connection that lost bytes mid-stream.
    proxy.pass_through()
    writer.write(b"after")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)
    assert bytes(echo.received) == b"ok"
    healthy_reader, healthy_writer = await connect(proxy)
    assert await roundtrip(healthy_reader, healthy_writer, b"new") == b"new"
    for w in (writer, fresh_writer, healthy_writer):
        w.close()


async def test_reset_sends_rst_to_open_and_new_connections(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), TIMEOUT)
    fresh_reader, fresh_writer = await connect(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(fresh_reader.read(1), TIMEOUT)
    assert proxy.resets == 2
    proxy.pass_through()
    healthy_reader, healthy_writer = await connect(proxy)
    assert await roundtrip(healthy_reader, healthy_writer, b"back") == b"back"
    for w in (writer, fresh_writer, healthy_writer):
        w.close()


async def test_half_close_sends_eof_after_some_bytes(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    proxy.half_close(after_bytes=3)
    writer.write(b"abcdef")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"abc"  # then EOF
    assert reader.at_eof()
    writer.close()


async def test_stall_forwards_requests_but_drops_replies(proxy: FaultProxy, echo: Echo) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    proxy.stall_replies()
    writer.write(b"INCR")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    assert bytes(echo.received) == b"okINCR" and not reader.at_eof()
    writer.close()


async def test_pattern_counted_across_chunks(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    for part in (b"xxMG", b"ETyyPI", b"NG MGET"):
        assert await roundtrip(reader, writer, part) == part
    assert proxy.seen[b"MGET"] == 2 and proxy.seen[b"PING"] == 1
    writer.close()


async def test_stop_closes_every_connection(echo: Echo) -> None:
    proxy = await FaultProxy("127.0.0.1", echo.port).start()
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    proxy.blackhole()
    _, parked = await connect(proxy)
    await proxy.stop()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    assert proxy.open_connections == 0
    with pytest.raises(OSError):
        await connect(proxy)
    writer.close()
    parked.close()
