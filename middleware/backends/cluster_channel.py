"""The invalidation channel on a Redis Cluster: one subscriber connection per master.

A bump script ``PUBLISH``es on the node that runs it: the owner of the namespace's slot, or,
while the slot migrates, the importing node (a bump redirected there by ``ASK``). Redis
writes the message to that node's own subscribers in the same event loop pass as the script's
reply, and relays it to every other node over the cluster bus, which delivers it later (on
loopback, measured: often after the writer's HTTP response, and later requests of another
instance read the old entry from their hot tier). So the channel listens on *every* master:
the message always arrives directly from the node that ran the bump, as on a single Redis;
the copies relayed by the bus arrive later and change nothing (forgetting a counter twice is
forgetting it once). Sharded ``SSUBSCRIBE`` does not help: a bump on the importing node
reaches only that shard's subscribers, and ``SPUBLISH`` has no bus relay at all.

Healthy only while every master's subscription is (``Subscriber``'s heartbeat and reconnects
per connection): one lost subscription turns the hot tier off and flushes it, as on one
node. The set of masters is read from the cluster client's slot map at every heartbeat
(after a failover or a new master, subscriptions are added and removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable

from middleware.backends.subscriber import Subscriber

__all__ = ["ClusterSubscriber"]

log = logging.getLogger(__name__)


class ClusterSubscriber:
    """``Subscriber``'s interface over one ``Subscriber`` per master (module docstring).

    ``masters``: the URLs of the cluster's masters now (raises while the cluster cannot be
    reached; the channel is unhealthy until it can).
    """

    def __init__(self, masters: Callable[[], Awaitable[list[str]]], channel: str, *,
                 on_message: Callable[[bytes], None], on_health: Callable[[bool], None],
                 connect_timeout: float, timeout: float,
                 ssl_context: ssl.SSLContext | None = None, heartbeat: float = 1.0) -> None:
        self.masters = masters
        self.channel = channel
        self.on_message = on_message
        self.on_health = on_health
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.heartbeat = heartbeat
        self.healthy = False
        self.subscribers: dict[str, Subscriber] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def messages(self) -> int:
        """Messages received on every connection (each is received once per master)."""
        return sum(s.messages for s in self.subscribers.values())

    @property
    def connects(self) -> int:
        return sum(s.connects for s in self.subscribers.values())

    def start(self) -> None:
        """Follow the masters and keep one subscription to each (call from the loop)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        subscribers, self.subscribers = self.subscribers, {}
        await asyncio.gather(*(s.close() for s in subscribers.values()), *self._closing)
        self._health()

    def drop(self) -> None:
        """Drop every connection (they reconnect); for tests."""
        for subscriber in self.subscribers.values():
            subscriber.drop()

    async def _run(self) -> None:
        while True:
            try:
                self._follow(await self.masters())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cluster is unreachable: keep what we have
                log.debug("Invalidation channel: cannot list the masters: %s", exc,
                          exc_info=True)
            await asyncio.sleep(self.heartbeat)

    def _follow(self, urls: list[str]) -> None:
        wanted = set(urls)
        for url in set(self.subscribers) - wanted:
            log.info("Invalidation channel: %s is no longer a master", url.rsplit("@", 1)[-1])
            task = asyncio.ensure_future(self.subscribers.pop(url).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        for url in sorted(wanted - set(self.subscribers)):
            subscriber = Subscriber(
                url, self.channel, on_message=self.on_message,
                on_health=self._on_health, connect_timeout=self.connect_timeout,
                timeout=self.timeout, ssl_context=self.ssl_context, heartbeat=self.heartbeat)
            self.subscribers[url] = subscriber
            subscriber.start()
        self._health()

    def _on_health(self, healthy: bool) -> None:
        self._health()

    def _health(self) -> None:
        subscribers = self.subscribers.values()
        healthy = bool(subscribers) and all(s.healthy for s in subscribers)
        if healthy != self.healthy:
            self.healthy = healthy
            self.on_health(healthy)
