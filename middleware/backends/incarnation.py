"""Generation counters in Redis that stay safe when Redis forgets them.

An entry is valid only while the generations it was stored under are current. That breaks if
a counter can come back to an old value:

- *evicted* (``allkeys-lru``, the natural policy for a cache) or *lost in a restart* with empty
  data, a counter recreated by ``INCR`` would count 1, 2, 3... again and meet the value an old
  entry (or a slow miss stored after the restart) carries. So a missing counter is created at
  a random 51-bit base (``SET NX``, in the scripts below), never at 0: it cannot repeat a value.
- *restored from an older RDB/AOF*, counters go back to values they had, and entries stored
  under them come back too, although later writes had invalidated them. No per-counter trick
  sees that, so the backend checks the server's *incarnation* on every new connection, before
  anything else is sent on it: ``INFO server``'s ``run_id`` against ``<ns>:incarnation``. When
  they differ (a restart of any kind: both change, or the key is gone) one script sets the
  global epoch, which every entry depends on, to a fresh random value and records the new
  ``run_id``. Every entry stored before, and every slow miss that read its generations before,
  is then invalid. Where ``INFO`` is refused (some managed services), a missing incarnation
  key still resets the epoch (a restart with empty data, or the key evicted); a restore that
  brings the key back is then not detected, and the log says so once.

A Redis restart always drops the connection, so the check runs before the first command of
every worker after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from middleware.backends.base import random_base
from middleware.backends.pipelined import Execute, ReplyError
from middleware.keys import EPOCH_TAG, generation_key

__all__ = ["BUMP", "INIT", "IncarnationCheck", "bump_args", "init_args"]

log = logging.getLogger(__name__)

BUMP = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i], 'NX')
end
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCR', key)
end
return out
"""
"""Increment counters; a missing one starts from its random base (``ARGV[i]``)."""

INIT = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i], 'NX')
end
return redis.call('MGET', unpack(KEYS))
"""
"""Current values of counters, the missing ones created at their random base."""

RESET_ON_NEW_INCARNATION = """
local have = redis.call('GET', KEYS[1])
if have and (ARGV[1] == '' or have == ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], '*')
end
return 1
"""
"""``KEYS``: incarnation, epoch. ``ARGV``: run_id ('' when unknown), a fresh epoch, the
invalidation channel ('' for none: its subscribers forget everything)."""

PUBLISHED_BUMP = BUMP.replace(
    "return out", "redis.call('PUBLISH', ARGV[#KEYS + 1], ARGV[#KEYS + 2])\nreturn out")
"""``BUMP`` that also publishes the bumped keys (a JSON list) on the invalidation channel, in
the same atomic script: a bump never lands without its message (``middleware.hot``)."""


def bump_args(keys: Sequence[str], channel: str | None = None) -> tuple[Any, ...]:
    bases = [random_base() for _ in keys]
    if channel:
        return ("EVAL", PUBLISHED_BUMP, len(keys), *keys, *bases, channel,
                orjson.dumps(list(keys)))
    return ("EVAL", BUMP, len(keys), *keys, *bases)


def init_args(keys: Sequence[str]) -> tuple[Any, ...]:
    return ("EVAL", INIT, len(keys), *keys, *(random_base() for _ in keys))


def _run_id(info: Any) -> str:
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    return ""


class IncarnationCheck:
    """The ``on_connect`` hook of the pipelined client (see the module docstring)."""

    def __init__(self, namespace: str, channel: str | None = None) -> None:
        self.channel = channel or ""
        self.incarnation_key = f"{namespace}:incarnation"
        self.epoch_key = generation_key(namespace, EPOCH_TAG)
        self.resets = 0
        """How many times this process found a new incarnation and reset the epoch."""
        self._warned = False

    async def __call__(self, execute: Execute) -> None:
        (info,) = await execute([("INFO", "server")])
        run_id = "" if isinstance(info, ReplyError) else _run_id(info)
        if not run_id and not self._warned:
            self._warned = True
            log.warning("Redis refused INFO (%s): a restart from an older snapshot cannot be "
                        "detected; a restart with empty data still is", info)
        (reset,) = await execute([("EVAL", RESET_ON_NEW_INCARNATION, 2, self.incarnation_key,
                                   self.epoch_key, run_id, random_base(), self.channel)])
        if isinstance(reset, ReplyError):
            raise reset
        if reset:
            self.resets += 1
            log.warning("Redis has a new incarnation (run_id %s): reset the global epoch, so "
                        "no entry or slow miss from before can be served", run_id or "unknown")
