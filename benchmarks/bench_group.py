"""Group (errgroup) task spawning: asyncgo against the task groups a user would otherwise pick.

Peers, each on the backends where a user would pick it:

* ``asyncio.TaskGroup`` (asyncio, uvloop): ``tg.create_task(fn())``;
* ``trio nursery`` (trio): ``nursery.start_soon(fn)``;
* ``anyio task group`` (every backend): ``tg.start_soon(fn)``.

asyncgo is measured twice: ``asyncgo`` is ``await g.go(fn)``, the API as
written in practice (a cancel point; like every asyncgo fast path it yields
to the scheduler once per 256 spawns, so the first tasks run while later ones
are being spawned); ``asyncgo try_go`` is the synchronous ``g.try_go(fn)``,
which never yields -- the same shape as the peers' loops. ``asyncgo in scope``
is ``await g.go(fn)`` with the block inside an anyio cancel scope: on asyncio
and uvloop the group then registers each task with anyio at spawn, so that the
scope's cancellation and deadline reach it directly (with no anyio scope around
the block, as in the other rows, nothing outside can, and it does not).

Benchmarks (issue #4):

* ``spawn_join``: spawn N trivial tasks (``async def f(): pass``) in one group
  and leave it (join), tasks/s, spawn and join both timed. N = 100k (10k with
  ``--quick``). Target: asyncgo >= 0.8x the native group of the backend.
* ``spawn_join_limit``: the same with at most 64 tasks running at once, each
  task doing one checkpoint. asyncgo: ``Group(limit=64)``, ``await g.go(fn)``;
  peers: the usual pattern, a semaphore acquired before each spawn and
  released when the task ends (``asyncio.Semaphore``, ``trio.CapacityLimiter``,
  ``anyio.Semaphore``), since their task groups have no limit.
* ``small_groups``: N/10 groups one after another, each with two trivial tasks
  (``await g.go(f)`` twice), groups/s: the fixed cost of a block, as in a request
  handler fanning out to two backends. No target.
* ``medium_groups``: groups of 256 trivial tasks one after another (100k tasks in
  all), tasks/s: the per-task cost without 100k tasks alive at once. No target.
* ``first_error``: spawn N/10 tasks blocked forever and one that fails; time
  until the group has cancelled them all and re-raised, tasks/s.

Each implementation runs in the same process, rounds interleaved; the value is
the median of the rounds. Every run checks that the tasks that ran (or were
cancelled) add up to the number spawned and that the error came out: a miss is a
`BenchError`.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import anyio
import anyio.lowlevel
from _harness import check, emit, parse_args, run

from asyncgo._group import Group

Spawner = Callable[[int, Callable[[], Awaitable[None]]], Awaitable[None]]

done = 0


async def trivial() -> None:
    global done
    done += 1


async def one_checkpoint() -> None:
    global done
    await anyio.lowlevel.checkpoint()
    done += 1


# -- spawn N tasks of fn in one group, and join ------------------------------------------


async def asyncgo_go(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    async with Group() as g:
        for _ in range(n):
            await g.go(fn)


async def asyncgo_go_in_scope(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    with anyio.CancelScope():
        async with Group() as g:
            for _ in range(n):
                await g.go(fn)


async def asyncgo_try_go(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    async with Group() as g:
        for _ in range(n):
            g.try_go(fn)


async def asyncio_taskgroup(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(fn())  # type: ignore[arg-type]


async def trio_nursery(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(fn)


async def anyio_taskgroup(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(fn)


def spawn_peers(backend: str) -> list[tuple[str, Spawner]]:
    impls: list[tuple[str, Spawner]] = [
        ("asyncgo", asyncgo_go),
        ("asyncgo try_go", asyncgo_try_go),
        ("asyncgo in scope", asyncgo_go_in_scope),
    ]
    if backend in ("asyncio", "uvloop"):
        impls.append(("asyncio.TaskGroup", asyncio_taskgroup))
    if backend == "trio":
        impls.append(("trio nursery", trio_nursery))
    impls.append(("anyio task group", anyio_taskgroup))
    return impls


def native(backend: str) -> str:
    return "trio nursery" if backend == "trio" else "asyncio.TaskGroup"


# -- many groups, one after another: the fixed cost of a block --------------------------

SMALL = 2  # tasks per group: a request's fan-out to two backends
MEDIUM = 256  # tasks per group: a batch


def blocks_peers(backend: str, k: int) -> list[tuple[str, Spawner]]:
    """The one-group spawners above, run as n groups of *k* tasks each."""

    def blocks(spawner: Spawner) -> Spawner:
        async def run(n: int, fn: Callable[[], Awaitable[None]]) -> None:
            for _ in range(n):
                await spawner(k, fn)

        return run

    return [(name, blocks(spawner)) for name, spawner in spawn_peers(backend) if name in PEERS]


PEERS = ("asyncgo", "asyncio.TaskGroup", "trio nursery", "anyio task group")


# -- with a limit ------------------------------------------------------------------------


LIMIT = 64


async def asyncgo_limit(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    async with Group(limit=LIMIT) as g:
        for _ in range(n):
            await g.go(fn)


async def _released(fn: Callable[[], Awaitable[None]], release: Callable[[], object]) -> None:
    try:
        await fn()
    finally:
        release()


async def asyncio_limit(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    sem = asyncio.Semaphore(LIMIT)
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            await sem.acquire()
            tg.create_task(_released(fn, sem.release))


async def trio_limit(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    import trio

    lim = trio.CapacityLimiter(LIMIT)
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            token = object()
            await lim.acquire_on_behalf_of(token)
            nursery.start_soon(_released, fn, lambda t=token: lim.release_on_behalf_of(t))


async def anyio_limit(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    sem = anyio.Semaphore(LIMIT)
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            await sem.acquire()
            tg.start_soon(_released, fn, sem.release)


def limit_peers(backend: str) -> list[tuple[str, Spawner]]:
    impls: list[tuple[str, Spawner]] = [("asyncgo", asyncgo_limit)]
    if backend in ("asyncio", "uvloop"):
        impls.append(("asyncio.TaskGroup", asyncio_limit))
    if backend == "trio":
        impls.append(("trio nursery", trio_limit))
    impls.append(("anyio task group", anyio_limit))
    return impls


# -- the first error cancels the rest -------------------------------------------------------


class Boom(Exception):
    pass


async def blocked() -> None:
    global done
    try:
        await anyio.sleep_forever()
    finally:
        done += 1


async def failing() -> None:
    await anyio.lowlevel.checkpoint()
    raise Boom()


def _is_boom(exc: BaseException) -> bool:
    if isinstance(exc, Boom):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_boom(e) for e in exc.exceptions)
    return False


async def first_error(spawner: Spawner, n: int) -> None:
    """Spawn n blocked tasks, then one failing task, through *spawner*; expect Boom."""
    started = [0]

    async def fn() -> None:
        started[0] += 1
        if started[0] > n:  # the last to start: every other task is blocked by now
            return await failing()
        return await blocked()

    try:
        await spawner(n + 1, fn)
    except BaseException as exc:
        check(_is_boom(exc), f"first_error: unexpected {exc!r}")
    else:
        raise AssertionError("first_error: no error came out")


# -- driver -------------------------------------------------------------------------------


async def timed(what: Callable[[], Awaitable[None]]) -> float:
    gc.collect()
    t0 = perf_counter()
    await what()
    return perf_counter() - t0


def main() -> None:
    global done
    args = parse_args(__doc__.splitlines()[0])
    backend, quick = args.backend, args.quick
    n = 10_000 if quick else 100_000
    rounds = 1 if quick else 5
    n_err = n // 10
    nat = native(backend)

    def targets(rows: list[str]) -> list[dict[str, Any]]:
        return [{"peer": nat, "min_ratio": 0.8}] if nat in rows else []

    async def bench_main() -> None:
        global done
        for bench, peers, fn, count in (
            ("spawn_join", spawn_peers(backend), trivial, n),
            ("spawn_join_limit", limit_peers(backend), one_checkpoint, n),
            ("small_groups", blocks_peers(backend, SMALL), trivial, n // 10),
            ("medium_groups", blocks_peers(backend, MEDIUM), trivial, n // MEDIUM),
        ):
            names = [name for name, _ in peers]
            times: dict[str, list[float]] = {name: [] for name in names}
            for name, spawner in peers:  # warm-up
                done = 0
                await spawner(1000, fn)
            for _ in range(rounds):
                for name, spawner in peers:
                    done = 0
                    times[name].append(await timed(lambda s=spawner: s(count, fn)))
                    k = {"small_groups": SMALL, "medium_groups": MEDIUM}.get(bench, 1)
                    ran = count * k
                    check(done == ran, f"{bench}/{name}: {done} of {ran} tasks ran")
            for name in names:
                extra: dict[str, Any] = {"n": count, "rounds": rounds}
                if name == "asyncgo":
                    if bench == "spawn_join":  # the target; the others are reported
                        extra["targets"] = targets(names)
                        extra["note"] = (
                            "asyncgo: `await g.go(f)`, which yields to the scheduler once per "
                            "256 spawns (the anti-starvation budget of every asyncgo fast "
                            "path); asyncgo try_go: `g.try_go(f)`, which never yields, like "
                            "the peers' loops; asyncgo in scope: `await g.go(f)` with the block "
                            "inside an anyio cancel scope (asyncio: each task is registered "
                            "with anyio, so that the scope reaches it)"
                        )
                    elif bench == "small_groups":
                        extra["note"] = (
                            f"n groups of {SMALL} trivial tasks each (`await g.go(f)`), one "
                            "after another: the fixed cost of entering and leaving a block "
                            "(a context and, on asyncio, an anyio cancel scope per group); "
                            "groups/s, no target"
                        )
                    elif bench == "medium_groups":
                        extra["note"] = (
                            f"n groups of {MEDIUM} trivial tasks each, one after another: "
                            "the per-task cost where the native group does not hold 100 000 "
                            "tasks alive at once; tasks/s, no target"
                        )
                    else:
                        extra["limit"] = LIMIT
                        extra["note"] = (
                            f"peers have no limit: a semaphore of {LIMIT} (asyncio.Semaphore, "
                            "trio.CapacityLimiter, anyio.Semaphore) is acquired before each "
                            "spawn and released when the task ends"
                        )
                rate = count / statistics.median(times[name])
                if bench == "medium_groups":
                    rate *= MEDIUM
                unit = "groups/s" if bench == "small_groups" else "tasks/s"
                emit(bench, name, backend, rate, unit, **extra)

        variants = ("asyncgo try_go", "asyncgo in scope")  # (first_error: asyncgo once)
        peers = [p for p in spawn_peers(backend) if p[0] not in variants]
        times = {name: [] for name, _ in peers}
        for _ in range(rounds):
            for name, spawner in peers:
                done = 0
                times[name].append(await timed(lambda s=spawner: first_error(s, n_err)))
                check(done == n_err, f"first_error/{name}: {done} of {n_err} tasks cancelled")
        for name, _ in peers:
            extra = {"n": n_err, "rounds": rounds}
            if name == "asyncgo":
                extra["note"] = (
                    "spawn n tasks blocked forever and one failing task; until the group has "
                    "cancelled the rest and raised (peers: an ExceptionGroup holding the error)"
                )
            emit(
                "first_error",
                name,
                backend,
                n_err / statistics.median(times[name]),
                "tasks/s",
                **extra,
            )

    run(bench_main, backend)


if __name__ == "__main__":
    main()
