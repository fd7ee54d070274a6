"""serving.accept: every waiting connection accepted per loop pass, none after close."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
import uvloop

from serving.accept import AcceptAllLoop, AcceptAllPolicy

WAITING = 200


class Echo(asyncio.Protocol):
    """Echoes what it reads; counts the connections made."""

    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Echo.made += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def _passes_to_accept(loop: asyncio.AbstractEventLoop,
                      waiting: int) -> tuple[int, list[socket.socket]]:
    """Loop passes until ``waiting`` connections queued before the loop ran are all accepted."""
    Echo.made = 0
    server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0, backlog=1024))
    port = server.sockets[0].getsockname()[1]
    # The kernel completes each handshake and queues the connection: all are waiting.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(waiting)]
    passes = 0

    async def count_passes() -> None:
        nonlocal passes
        while Echo.made < waiting and passes < 10 * waiting:
            passes += 1
            await asyncio.sleep(0)

    loop.run_until_complete(count_passes())
    server.close()
    loop.run_until_complete(server.wait_closed())
    return passes, clients


@pytest.fixture
def loops() -> Iterator[dict[str, asyncio.AbstractEventLoop]]:
    made = {"uvloop": uvloop.Loop(), "accept-all": AcceptAllLoop()}
    yield made
    for loop in made.values():
        loop.close()


def test_all_waiting_connections_are_accepted_in_a_few_passes(
        loops: dict[str, asyncio.AbstractEventLoop]) -> None:
    libuv_passes, libuv_clients = _passes_to_accept(loops["uvloop"], WAITING)
    passes, clients = _passes_to_accept(loops["accept-all"], WAITING)
    for sock in libuv_clients + clients:
        sock.close()
    # libuv alone takes one connection per pass; the greedy path takes them all at once (plus
    # a pass for the hand-over tasks).
    assert libuv_passes >= WAITING - 1
    assert passes <= 5, passes


def test_accepted_connections_are_served() -> None:
    loop = AcceptAllLoop()
    try:
        server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]

        async def talk() -> list[bytes]:
            pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
            for n, (_, writer) in enumerate(pairs):
                writer.write(b"ping %d\n" % n)
            replies = [await reader.readline() for reader, _ in pairs]
            for _, writer in pairs:
                writer.close()
            return replies

        assert loop.run_until_complete(talk()) == [b"ping %d\n" % n for n in range(20)]
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()


def test_a_closed_server_accepts_nothing_more() -> None:
    loop = AcceptAllLoop()
    try:
        server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        server.close()
        loop.run_until_complete(server.wait_closed())
        # The duplicate descriptor is closed too: the socket no longer listens at all.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        loop.close()


def test_the_policy_makes_accept_all_loops() -> None:
    loop = AcceptAllPolicy().new_event_loop()
    try:
        assert isinstance(loop, AcceptAllLoop)
    finally:
        loop.close()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, AcceptAllPolicy),
    ({"ACCEPT_ALL": "false"}, None),
    ({"SANIC_USE_UVLOOP": "false"}, None),
])
def test_the_worker_factory_installs_the_policy_unless_turned_off(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: type | None) -> None:
    from app import serving_app
    from settings import Settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = asyncio.get_event_loop_policy()
    try:
        asyncio.set_event_loop_policy(None)
        serving_app(Settings.from_env({"ACCEPT_ALL": env.get("ACCEPT_ALL", "true")}))
        installed = asyncio.get_event_loop_policy()
        assert isinstance(installed, AcceptAllPolicy) == (expected is AcceptAllPolicy)
    finally:
        asyncio.set_event_loop_policy(before)
