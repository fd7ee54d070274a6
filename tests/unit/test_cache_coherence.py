"""Host-wide generations and the lost-invalidation ledger."""

from __future__ import annotations

import multiprocessing

from middleware.coherence import Coherence
from middleware.keys import EPOCH_TAG

SPAWN = multiprocessing.get_context("spawn")  # what Sanic's worker manager uses


def test_bump_changes_only_the_bumped_tags() -> None:
    state = Coherence.local()
    before = state.generations(["a", "b"])
    state.bump(["a"])
    after = state.generations(["a", "b"])
    assert after[0] == before[0] + 1 and after[1:] == before[1:]


def test_epoch_bump_changes_every_vector() -> None:
    state = Coherence.local()
    before = state.generations(["a"])
    state.bump([EPOCH_TAG])
    assert state.generations(["a"])[-1] == before[-1] + 1


def test_slots_are_stable_across_instances() -> None:
    assert Coherence.local().slot("posts:feed") == Coherence.local().slot("posts:feed")


def test_own_lost_tags_are_replayed() -> None:
    state = Coherence.local()
    assert not state.needs_reconcile and state.plan() is None
    state.record_lost(["posts:feed", "user:1"])
    state.record_lost(["posts:feed"])
    assert state.needs_reconcile and state.outstanding == 2
    plan = state.plan()
    assert plan == (("posts:feed", "user:1"), 2)
    state.reconciled(plan[1])
    assert not state.needs_reconcile and state.plan() is None


def test_overflow_collapses_into_an_epoch_bump() -> None:
    state = Coherence.local(max_pending=3)
    state.record_lost(["a", "b"])
    state.record_lost(["c", "d"])
    assert state.plan() == ((EPOCH_TAG,), 2)
    state.reconciled(2)
    state.record_lost(["e"])
    assert state.plan() == (("e",), 3)


def test_another_workers_lost_write_forces_an_epoch_bump() -> None:
    parts = Coherence.create_shared(64, SPAWN)
    worker_a = Coherence.attach(parts)
    worker_b = Coherence.attach(parts)
    worker_a.record_lost(["posts:feed"])
    assert worker_b.needs_reconcile
    assert worker_b.plan() == ((EPOCH_TAG,), 1)
    worker_b.reconciled(1)
    assert worker_a.plan() is None and not worker_a.needs_reconcile


def test_workers_share_local_generations() -> None:
    parts = Coherence.create_shared(64, SPAWN)
    worker_a = Coherence.attach(parts)
    worker_b = Coherence.attach(parts)
    before = worker_b.generations(["jobs:list"])
    worker_a.bump(["jobs:list"])
    assert worker_b.generations(["jobs:list"]) != before


def _bump_in_child(parts: tuple[object, object, object]) -> None:
    state = Coherence.attach(parts)  # type: ignore[arg-type]
    state.bump(["jobs:list"])
    state.record_lost(["jobs:list"])


def test_state_is_shared_with_a_spawned_process() -> None:
    parts = Coherence.create_shared(64, SPAWN)
    parent = Coherence.attach(parts)
    before = parent.generations(["jobs:list"])
    child = SPAWN.Process(target=_bump_in_child, args=(parts,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert parent.generations(["jobs:list"]) != before
    assert parent.plan() == ((EPOCH_TAG,), 1)
