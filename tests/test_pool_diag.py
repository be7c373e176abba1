"""WorkerPool under asyncgo.debug: the labels a job's task shows, and a task parked
awaiting a JobHandle before diagnostics were turned on.

* Labels (``debug.labels``): a job runs in a long-lived worker task, which carried
  the labels of whoever started the worker -- a dynamic pool's worker started by a
  submit of request A showed ``request=A`` while running request B's job, and a
  fixed pool's workers showed none at all. A job now runs with the labels in force
  at its `submit` / `try_submit` / `map` (they replace the worker's while it runs);
  an idle worker shows the labels in force where the pool was entered.
* Early parks: ``JobHandle.__await__`` parked through a coroutine, whose wrapper hid
  the park site from the await-stack walk, so a task that awaited an unfinished
  handle before diagnostics were on showed as plain "waiting", and
  ``detect_deadlocks`` did not count it as parked.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack, nullcontext

import anyio
import pytest

from asyncgo import Chan, Deadlock, WorkerPool, debug

pytestmark = [pytest.mark.anyio]
if "asyncgo.testing.pytest_plugin" in sys.modules:  # (it turns diagnostics on for every test)
    pytestmark.append(pytest.mark.asyncgo_detect_deadlocks(False))


def _runs(fn_suffix: str) -> list[debug.TaskInfo]:
    """The tasks whose await stack has a frame of a function named *fn_suffix*."""
    return [t for t in debug.tasks() if any(f.function.endswith(fn_suffix) for f in t.stack)]


async def job(ev: anyio.Event) -> None:
    await ev.wait()


async def my_labels() -> dict[str, str]:
    await anyio.sleep(0)
    return dict(debug.current_labels())


def my_labels_sync() -> dict[str, str]:
    return dict(debug.current_labels())


# -- labels --------------------------------------------------------------------------


async def test_job_task_shows_the_labels_of_its_submit() -> None:
    """A fixed pool entered outside any labels block: the job's task shows the labels of
    the submit (it showed none); once the job is done, the idle worker shows none again."""
    async with WorkerPool(workers=1) as pool:
        ev = anyio.Event()
        with debug.labels(request="r-1"):
            h = await pool.submit(job, ev)
        await anyio.wait_all_tasks_blocked()
        [t] = _runs(".job")
        assert dict(t.labels) == {"request": "r-1"}
        ev.set()
        await h
        await anyio.wait_all_tasks_blocked()
        [w] = _runs("WorkerPool._worker")
        assert dict(w.labels) == {}


async def test_dynamic_pool_worker_shows_each_jobs_own_labels() -> None:
    """A worker started by the submit of request A runs request B's job: it shows B."""
    async with WorkerPool(min_workers=0, max_workers=1, idle_timeout=3600) as pool:
        a = anyio.Event()
        with debug.labels(request="A"):
            ha = await pool.submit(job, a)
        await anyio.wait_all_tasks_blocked()
        assert [dict(t.labels) for t in _runs(".job")] == [{"request": "A"}]
        a.set()
        await ha
        b = anyio.Event()
        with debug.labels(request="B"):
            hb = await pool.submit(job, b)
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 1  # the same worker
        [t] = _runs(".job")
        assert dict(t.labels) == {"request": "B"}
        b.set()
        await hb
        await anyio.wait_all_tasks_blocked()
        # Idle again: the labels where the pool was entered (none), not the last job's.
        [w] = _runs("WorkerPool._worker")
        assert dict(w.labels) == {}


async def test_submit_labels_replace_the_pools_while_the_job_runs() -> None:
    """The submitter's labels replace (not extend) those in force where the pool was
    entered; an idle worker -- even one a labelled submit started -- shows the latter."""
    async with AsyncExitStack() as stack:
        with debug.labels(pool="p"):
            pool = await stack.enter_async_context(
                WorkerPool(min_workers=0, max_workers=2, idle_timeout=3600)
            )
        with debug.labels(request="r-2"):
            h1 = await pool.submit(my_labels)  # starts a worker: in the submit's context
        h2 = await pool.submit(my_labels)  # no labels in force: none
        assert await h1 == {"request": "r-2"}
        assert await h2 == {}
        await anyio.wait_all_tasks_blocked()
        workers = _runs("WorkerPool._worker")
        assert workers and all(dict(w.labels) == {"pool": "p"} for w in workers)


async def test_labels_reach_try_submit_map_sync_and_thread_jobs() -> None:
    async with WorkerPool(workers=2) as pool:
        with debug.labels(request="t"):
            h = pool.try_submit(my_labels)
        assert h is not None
        assert await h == {"request": "t"}
        with debug.labels(request="s"):
            hs = await pool.submit(my_labels_sync)  # a sync job, run on the loop
        assert await hs == {"request": "s"}
        with debug.labels(request="m"):
            results = pool.map(lambda _: my_labels(), range(5))
        assert [r async for r in results] == [{"request": "m"}] * 5
    async with WorkerPool(workers=2, executor="thread") as tpool:
        with debug.labels(request="th"):
            ht = await tpool.submit(my_labels_sync)
        assert await ht == {"request": "th"}


async def test_tasks_a_job_starts_keep_its_labels() -> None:
    got: list[dict[str, str]] = []

    async def child() -> None:
        got.append(dict(debug.current_labels()))

    async def parent() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)

    async with WorkerPool(workers=1) as pool:
        with debug.labels(request="c"):
            h = await pool.submit(parent)
        await h
    assert got == [{"request": "c"}]


async def test_a_job_changing_its_labels_leaves_the_next_job_alone() -> None:
    async def relabel() -> Mapping[str, str]:
        with debug.labels(step="inner") as inner:
            await anyio.sleep(0)
            return inner

    async with WorkerPool(workers=1) as pool:
        with debug.labels(request="x"):
            h1 = await pool.submit(relabel)
            h2 = await pool.submit(my_labels)
        h3 = await pool.submit(my_labels)
        assert dict(await h1) == {"request": "x", "step": "inner"}
        assert await h2 == {"request": "x"}
        assert await h3 == {}


# -- a JobHandle awaited before diagnostics were on -------------------------------------


async def test_job_wait_parked_before_diagnostics_is_found() -> None:
    assert not debug.is_enabled()
    gate = Chan[int]()
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(gate.recv)
        async with anyio.create_task_group() as tg:
            tg.start_soon(h.wait, name="early-job-waiter")
            await anyio.wait_all_tasks_blocked()
            with debug.enabled():
                infos = debug.tasks()
                text = debug.dump(group=False)
            [t] = [t for t in infos if t.name == "early-job-waiter"]
            assert (t.state, t.op, t.parked_for) == ("parked", "job wait", None)
            assert [p.kind for p in t.blocked_on] == ["JobHandle"]
            assert any(f.function.endswith("JobHandle._park") for f in t.stack)
            assert f'task {t.id} "early-job-waiter" [job wait]:' in text
            await gate.send(1)
    assert h.result() == 1


async def test_job_wait_recorded_when_diagnostics_are_on() -> None:
    gate = Chan[int]()
    with debug.enabled():
        async with WorkerPool(workers=1) as pool:
            h = await pool.submit(gate.recv)
            async with anyio.create_task_group() as tg:
                tg.start_soon(h.wait, name="job-waiter")
                await anyio.wait_all_tasks_blocked()
                [t] = [t for t in debug.tasks() if t.name == "job-waiter"]
                assert (t.state, t.op) == ("parked", "job wait")
                assert t.parked_for is not None  # recorded, not found
                await gate.send(1)


@pytest.mark.parametrize("early", [True, False], ids=["parked-early", "parked-traced"])
async def test_deadlock_with_a_job_waiter(early: bool) -> None:
    gate, never = Chan[int](), Chan[int]()
    caught: list[Deadlock] = []
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(gate.recv)
        async with anyio.create_task_group() as tg:
            with nullcontext() if early else debug.enabled():
                tg.start_soon(h.wait, name="job-waiter")
                await anyio.wait_all_tasks_blocked()
            # (a hang guard, not a timing assertion: the deadlock is found at once)
            with anyio.move_on_after(10):
                try:
                    async with debug.detect_deadlocks():
                        await never.recv()
                except Deadlock as e:
                    caught.append(e)
            await gate.send(1)
    assert len(caught) == 1, "detect_deadlocks() did not raise Deadlock"
    assert '"job-waiter" [job wait' in str(caught[0])


async def test_cancelling_an_early_job_waiter_still_works() -> None:
    gate = Chan[int]()
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(gate.recv)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await h  # a cancel point: cancelled, the job is not
        assert scope.cancelled_caught and not h.done()
        assert not h._waiters  # (never queued: raised before waiting)
        await gate.send(2)
        assert await h == 2
