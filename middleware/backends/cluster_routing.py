"""Commands for one hash slot of a Redis Cluster, sent to its owner and redirected safely.

``RedisCluster.execute_command`` follows redirections too, but not safely under concurrency
(redis-py 8.1, seen against a real cluster under a few dozen concurrent commands):

- ``ASK``: it sends ``ASKING`` and then the command as two pooled commands, which may take two
  different connections; the command then arrives without ``ASKING``, is sent back by
  ``MOVED``, and bounces between the two nodes until "TTL exhausted".
- ``MOVED``: every ``reinitialize_steps``-th one closes every connection of the client,
  failing the commands in flight on them ("Connection closed by server").

Here ``ASKING`` and the command share one connection (a two-command pipeline on the importing
node), ``MOVED`` patches the slot map and nothing else, and a connection error, a timeout or
``CLUSTERDOWN`` marks the topology stale: it is reloaded (``CLUSTER SLOTS`` from any known
node, the failed one last) before the next command, which is how a failover is followed. The
error itself is raised for the circuit breaker; there are no retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rx
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster

__all__ = ["MAX_REDIRECTIONS", "SlotRouter"]

MAX_REDIRECTIONS = 5
"""``MOVED``/``ASK`` replies followed for one command before it fails (one of each is the
most a migration or a failover needs)."""


class SlotRouter:
    """Runs commands whose keys all live in ``slot`` on that slot's owner (module docstring).

    ``max_in_flight``: commands in flight at once; the next ones wait (redis-py fails a
    command that finds a node's connections all busy instead of waiting for one).
    """

    def __init__(self, client: RedisCluster, slot: int, *, max_in_flight: int) -> None:
        self.client = client
        self.slot = slot
        self.moved = 0
        """``MOVED`` replies followed."""
        self.asked = 0
        """``ASK`` replies followed."""
        self.stale = False
        """The topology must be reloaded before the next command."""
        self._refresh_lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def ready(self) -> None:
        """The slot map known (the first call discovers the cluster) and current."""
        if self.stale:
            async with self._refresh_lock:
                if self.stale:
                    self.stale = False
                    await self.client.nodes_manager.initialize()
        await self.client.initialize()  # a no-op once initialised

    async def execute(self, args: Sequence[Any]) -> Any:
        """The reply of one command; redis-py's errors are raised as they come."""
        async with self._in_flight:
            return await self._route(args)

    async def _route(self, args: Sequence[Any]) -> Any:
        manager = self.client.nodes_manager
        asking: ClusterNode | None = None
        for _ in range(MAX_REDIRECTIONS):
            await self.ready()
            node = asking or manager.get_node_from_slot(self.slot)
            try:
                if asking is None:
                    return await node.execute_command(*args)
                pair = [PipelineCommand(0, "ASKING"), PipelineCommand(1, *args)]
                await node.execute_pipeline(pair)
                for command in pair:
                    if isinstance(command.result, Exception):
                        raise command.result
                return pair[1].result
            except rx.MovedError as exc:  # the slot has a new owner (or a failover)
                self.moved += 1
                asking = None
                await manager.move_slot(exc)
            except rx.AskError as exc:  # the slot is migrating and this key has moved
                self.asked += 1
                asking = manager.get_node(host=exc.host, port=exc.port)
                if asking is None:  # a node the map does not know yet
                    self.stale = True
            except (rx.ConnectionError, rx.TimeoutError, OSError, rx.ClusterDownError):
                # The node is gone, hung, or its cluster has no quorum: reload the topology
                # before the next command (a failover shows there); the breaker counts this.
                self.stale = True
                manager.move_node_to_end_of_cached_nodes(node.name)
                raise
        raise rx.ClusterError(f"still redirected after {MAX_REDIRECTIONS} attempts")
