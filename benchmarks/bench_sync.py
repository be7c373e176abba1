"""Sync primitives and singleflight: asyncgo against what a user would otherwise pick.

Peers, each on the backends where a user would pick it:

* locks: ``asyncio.Lock`` (asyncio, uvloop), ``anyio.Lock`` (every backend; also
  with ``fast_acquire=True``, anyio's opt-in fast path), ``trio.Lock`` (trio);
* semaphores: ``asyncio.Semaphore``, ``anyio.Semaphore`` (+ ``fast_acquire``),
  ``trio.Semaphore``, on the same backends. asyncgo's is the weighted one,
  used with weight 1;
* singleflight: a lock-per-key cache (``dict`` of ``anyio.Lock``; the first task
  through computes and stores the value, the others find it cached) -- the
  usual hand-rolled way to avoid duplicate calls -- and, for the "calls saved"
  figure, no deduplication at all.

Benchmarks (issue #4):

* ``mutex_uncontended`` / ``semaphore_uncontended``: one task, ``async with``
  in a loop, ops/s.
* ``mutex_contended``: 8 tasks, each ``async with lock:`` around a checkpoint
  (so the lock is always held when the others arrive), ops/s; checks that the
  non-atomic increment inside is never lost.
* ``semaphore_contended``: size 4, 16 tasks, a checkpoint inside, ops/s; checks
  that at most 4 holders are ever inside.
* ``rwmutex_read_mostly``: 8 tasks, each taking the lock around a checkpoint,
  one operation in 8 a write and the rest reads, ops/s; checks that a writer is
  always alone inside and, for the RW locks, that readers did share the lock.
  Peers: the backend's plain lock (``asyncio.Lock``, ``trio.Lock``) and
  ``anyio.Lock``, used for reads and writes alike -- what a user without a
  readers-writer lock writes (asyncio, anyio and trio offer none).
* ``rwmutex_uncontended_read`` / ``rwmutex_uncontended_write`` (informational): one
  task, ``async with rw.read():`` / ``rw.write()`` in a loop against the plain locks'
  ``async with lock:``, ops/s.
* ``cond_pingpong``: two tasks taking turns through a condition variable (each
  waits, under the lock, until the shared turn is its own, then passes it and
  signals), round trips/s; checks the turns alternate. Peers:
  ``asyncio.Condition``, ``anyio.Condition``, ``trio.Condition``.
* ``cond_broadcast``: 10 tasks wait (in a loop, under the lock) for a generation
  number to pass theirs; another task bumps it and broadcasts (``notify_all``),
  three scheduler steps apart; wake-ups/s (10 per broadcast); checks that every
  waiter saw every generation. Same peers.
* ``singleflight_1000``: rounds of 1000 concurrent identical requests for a new
  key, each backed by a 1 ms "backend call", requests/s; ``extra.calls`` counts
  backend calls (the deduplicated implementations make one per round).
* ``singleflight_solo``: one task, ``do`` in a loop for one key, nobody else
  asking, with an async function that returns at once, calls/s: the fixed cost
  of one call -- singleflight starts a task for it; the peer is a lock per key
  (a ``dict`` of ``anyio.Lock``, the entry dropped after the call) with no cache,
  so that it calls the function every time too.

Every implementation runs the same task structure; only the lock object
differs. Only the work is timed (not spawning the tasks). The lock, semaphore,
RWMutex and Cond rows run in 5 rounds after a warm-up, the implementations
interleaved, and report the median round.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import anyio
import anyio.lowlevel
from _harness import check, emit, parse_args, run, timed_tasks

from asyncgo import singleflight
from asyncgo.sync import Cond, Mutex, RWMutex, Semaphore

Factory = Callable[[], Any]


def lock_peers(backend: str) -> list[tuple[str, Factory]]:
    impls: list[tuple[str, Factory]] = [("asyncgo", Mutex)]
    if backend in ("asyncio", "uvloop"):
        impls.append(("asyncio.Lock", asyncio.Lock))
    impls.append(("anyio.Lock", anyio.Lock))
    impls.append(("anyio.Lock(fast_acquire)", lambda: anyio.Lock(fast_acquire=True)))
    if backend == "trio":
        import trio

        impls.append(("trio.Lock", trio.Lock))
    return impls


def semaphore_peers(backend: str, size: int) -> list[tuple[str, Factory]]:
    impls: list[tuple[str, Factory]] = [("asyncgo", lambda: Semaphore(size))]
    if backend in ("asyncio", "uvloop"):
        impls.append(("asyncio.Semaphore", lambda: asyncio.Semaphore(size)))
    impls.append(("anyio.Semaphore", lambda: anyio.Semaphore(size)))
    impls.append(
        ("anyio.Semaphore(fast_acquire)", lambda: anyio.Semaphore(size, fast_acquire=True))
    )
    if backend == "trio":
        import trio

        impls.append(("trio.Semaphore", lambda: trio.Semaphore(size)))
    return impls


# -- locks and semaphores ---------------------------------------------------------------


async def uncontended(make: Factory, n: int) -> float:
    lock = make()
    t0 = perf_counter()
    for _ in range(n):
        async with lock:
            pass
    return n / (perf_counter() - t0)


ROUNDS = 5

Measure = Callable[[str, Factory, int], Awaitable[float]]


async def interleaved(
    peers: list[tuple[str, Factory]], n: int, measure: Measure
) -> dict[str, float]:
    """``measure(name, make, n / ROUNDS)`` for each peer, ROUNDS rounds interleaved after
    a warm-up: the median of each. (One loop lasts a fraction of a second; a single
    one per peer is at the mercy of the machine's stalls.)"""
    runs: dict[str, list[float]] = {name: [] for name, _ in peers}
    for name, make in peers:
        await measure(name, make, max(n // 100, 16))
    for _ in range(ROUNDS):
        for name, make in peers:
            runs[name].append(await measure(name, make, n // ROUNDS))
    return {name: statistics.median(v) for name, v in runs.items()}


async def mutex_contended(make: Factory, n: int, tasks: int, bench: str, impl: str) -> float:
    lock = make()
    counter = 0
    per = n // tasks

    async def worker() -> None:
        nonlocal counter
        for _ in range(per):
            async with lock:
                v = counter
                await anyio.lowlevel.checkpoint()
                counter = v + 1

    elapsed = await timed_tasks([worker] * tasks)
    check(counter == per * tasks, f"{bench}/{impl}: {counter} increments, expected {per * tasks}")
    return per * tasks / elapsed


async def semaphore_contended(
    make: Factory, n: int, tasks: int, size: int, bench: str, impl: str
) -> float:
    sem = make()
    inside = peak = done = 0
    per = n // tasks

    async def worker() -> None:
        nonlocal inside, peak, done
        for _ in range(per):
            async with sem:
                inside += 1
                peak = max(peak, inside)
                await anyio.lowlevel.checkpoint()
                inside -= 1
                done += 1

    elapsed = await timed_tasks([worker] * tasks)
    check(peak <= size, f"{bench}/{impl}: {peak} holders of a semaphore of size {size}")
    check(done == per * tasks, f"{bench}/{impl}: {done} acquisitions, expected {per * tasks}")
    return per * tasks / elapsed


# -- readers-writer lock and condition variable -------------------------------------------------


def rw_peers(backend: str) -> list[tuple[str, Factory]]:
    """asyncgo's RWMutex, then the plain locks a user would use for reads and writes."""
    impls: list[tuple[str, Factory]] = [("asyncgo", RWMutex)]
    for name, make in lock_peers(backend)[1:]:
        if "fast_acquire" not in name:
            impls.append((name, make))
    return impls


async def rw_uncontended(make: Factory, n: int, impl: str, write: bool) -> float:
    """ops/s of one task taking and releasing the lock; asyncgo writes the block the way
    a user does, ``async with rw.read():`` (or ``rw.write()``) each time."""
    lock = make()
    t0 = perf_counter()
    if impl != "asyncgo":
        for _ in range(n):
            async with lock:
                pass
    elif write:
        for _ in range(n):
            async with lock.write():
                pass
    else:
        for _ in range(n):
            async with lock.read():
                pass
    return n / (perf_counter() - t0)


async def rw_read_mostly(make: Factory, n: int, tasks: int, bench: str, impl: str) -> float:
    lock = make()
    if impl == "asyncgo":
        read_cm, write_cm = lock.read(), lock.write()
    else:
        read_cm = write_cm = lock
    readers = writers = most_readers = ops = 0
    per = n // tasks

    async def worker(k: int) -> None:
        nonlocal readers, writers, most_readers, ops
        for i in range(per):
            if (i + k) % 8 == 0:
                async with write_cm:
                    writers += 1
                    check(writers == 1 and readers == 0, f"{bench}/{impl}: writer not alone")
                    await anyio.lowlevel.checkpoint()
                    writers -= 1
            else:
                async with read_cm:
                    readers += 1
                    check(writers == 0, f"{bench}/{impl}: reader beside a writer")
                    most_readers = max(most_readers, readers)
                    await anyio.lowlevel.checkpoint()
                    readers -= 1
            ops += 1

    elapsed = await timed_tasks([lambda k=k: worker(k) for k in range(tasks)])
    check(ops == per * tasks, f"{bench}/{impl}: {ops} operations, expected {per * tasks}")
    if impl == "asyncgo":
        check(most_readers > 1, f"{bench}/{impl}: readers never shared the lock")
    return per * tasks / elapsed


def cond_peers(backend: str) -> list[tuple[str, Factory]]:
    impls: list[tuple[str, Factory]] = [("asyncgo", Cond)]
    if backend in ("asyncio", "uvloop"):
        impls.append(("asyncio.Condition", asyncio.Condition))
    impls.append(("anyio.Condition", anyio.Condition))
    if backend == "trio":
        import trio

        impls.append(("trio.Condition", trio.Condition))
    return impls


async def cond_pingpong(make: Factory, n: int, bench: str, impl: str) -> float:
    """Round trips/s: two tasks pass a turn back and forth through one condition."""
    cond = make()
    notify = cond.signal if impl == "asyncgo" else cond.notify
    turn = 0
    trail: list[int] = []

    async def player(me: int) -> None:
        nonlocal turn
        for _ in range(n):
            async with cond:
                while turn != me:
                    await cond.wait()
                trail.append(me)
                turn = 1 - me
                notify()

    elapsed = await timed_tasks([lambda: player(0), lambda: player(1)])
    check(trail == [0, 1] * n, f"{bench}/{impl}: the turns did not alternate")
    return n / elapsed


async def cond_broadcast(make: Factory, n: int, waiters: int, bench: str, impl: str) -> float:
    """Wake-ups/s: one task broadcasts generation after generation to *waiters* tasks."""
    cond = make()
    broadcast = cond.broadcast if impl == "asyncgo" else cond.notify_all
    gens = max(n // waiters, 1)
    gen = 0
    seen = 0

    async def waiter() -> None:
        nonlocal seen
        for r in range(gens):
            async with cond:
                while gen <= r:
                    await cond.wait()
                seen += 1

    async def broadcaster() -> None:
        nonlocal gen
        for _ in range(gens):
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            async with cond:
                gen += 1
                broadcast()

    elapsed = await timed_tasks([waiter] * waiters + [broadcaster])
    check(seen == gens * waiters, f"{bench}/{impl}: {seen} wake-ups, expected {gens * waiters}")
    return gens * waiters / elapsed


# -- singleflight ---------------------------------------------------------------------------


class Backend:
    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, key: str) -> str:
        self.calls += 1
        await anyio.sleep(0.001)
        return f"value of {key}"


async def sf_rounds(impl: str, rounds: int, requests: int) -> tuple[float, int]:
    """(requests/s, backend calls) for *rounds* bursts of *requests* identical requests."""
    be = Backend()
    results: list[str] = []
    total = 0.0

    if impl == "asyncgo":
        async with singleflight.Group() as sf:
            for r in range(rounds):
                key = f"k{r}"

                async def req(key: str = key) -> None:
                    value, _ = await sf.do(key, be.fetch, key)
                    results.append(value)

                total += await timed_tasks([req] * requests)
    elif impl == "lock-per-key cache":
        locks: dict[str, anyio.Lock] = {}
        cache: dict[str, str] = {}
        for r in range(rounds):
            key = f"k{r}"

            async def req(key: str = key) -> None:
                lock = locks.setdefault(key, anyio.Lock())
                async with lock:
                    if key not in cache:
                        cache[key] = await be.fetch(key)
                results.append(cache[key])

            total += await timed_tasks([req] * requests)
    else:  # "no dedup": every request calls the backend
        for r in range(rounds):
            key = f"k{r}"

            async def req(key: str = key) -> None:
                results.append(await be.fetch(key))

            total += await timed_tasks([req] * requests)

    check(len(results) == rounds * requests, f"singleflight_1000/{impl}: requests lost")
    check(
        sorted(set(results)) == sorted(f"value of k{r}" for r in range(rounds)),
        f"singleflight_1000/{impl}: wrong values",
    )
    return rounds * requests / total, be.calls


async def sf_solo(impl: str, n: int) -> float:
    """Calls/s of *n* back-to-back ``do`` calls by one task (nobody to share with)."""
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        return calls

    got = 0
    if impl == "asyncgo":
        async with singleflight.Group() as sf:
            t0 = perf_counter()
            for _ in range(n):
                got, shared = await sf.do("k", fn)
            elapsed = perf_counter() - t0
            check(not shared and not sf._calls, "singleflight_solo/asyncgo: shared, or kept")
    else:  # "lock-per-key": what a user writes to run one call per key at a time
        locks: dict[str, anyio.Lock] = {}
        t0 = perf_counter()
        for _ in range(n):
            lock = locks.setdefault("k", anyio.Lock())
            async with lock:
                got = await fn()
            locks.pop("k", None)
        elapsed = perf_counter() - t0
    check(got == calls == n, f"singleflight_solo/{impl}: {calls} calls for {n} requests")
    return n / elapsed


# -- driver -------------------------------------------------------------------------------


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    backend, quick = args.backend, args.quick
    n_unc = 20_000 if quick else 200_000
    n_con = 4_000 if quick else 50_000
    rounds = 2 if quick else 10
    n_solo = 10_000 if quick else 100_000
    tasks, sem_tasks, sem_size = 8, 16, 4

    async def bench_main() -> None:
        extra: dict[str, Any]

        def unc(name: str, make: Factory, n: int) -> Awaitable[float]:
            return uncontended(make, n)

        def mcon(name: str, make: Factory, n: int) -> Awaitable[float]:
            return mutex_contended(make, n, tasks, "mutex_contended", name)

        def scon(name: str, make: Factory, n: int) -> Awaitable[float]:
            return semaphore_contended(make, n, sem_tasks, sem_size, "semaphore_contended", name)

        def rw(name: str, make: Factory, n: int) -> Awaitable[float]:
            return rw_read_mostly(make, n, tasks, "rwmutex_read_mostly", name)

        def rwr(name: str, make: Factory, n: int) -> Awaitable[float]:
            return rw_uncontended(make, n, name, False)

        def rww(name: str, make: Factory, n: int) -> Awaitable[float]:
            return rw_uncontended(make, n, name, True)

        def cond(name: str, make: Factory, n: int) -> Awaitable[float]:
            return cond_pingpong(make, n, "cond_pingpong", name)

        def condb(name: str, make: Factory, n: int) -> Awaitable[float]:
            return cond_broadcast(make, n, 10, "cond_broadcast", name)

        r = ROUNDS
        for name, v in (await interleaved(lock_peers(backend), n_unc, unc)).items():
            emit("mutex_uncontended", name, backend, v, "ops/s", n=n_unc, rounds=r)
        for name, v in (await interleaved(lock_peers(backend), n_con, mcon)).items():
            emit("mutex_contended", name, backend, v, "ops/s", n=n_con, tasks=tasks, rounds=r)
        for name, v in (await interleaved(semaphore_peers(backend, 10), n_unc, unc)).items():
            emit("semaphore_uncontended", name, backend, v, "ops/s", n=n_unc, size=10, rounds=r)
        peers = semaphore_peers(backend, sem_size)
        for name, v in (await interleaved(peers, n_con, scon)).items():
            extra = {"n": n_con, "tasks": sem_tasks, "size": sem_size, "rounds": r}
            emit("semaphore_contended", name, backend, v, "ops/s", **extra)
        for name, v in (await interleaved(rw_peers(backend), n_con, rw)).items():
            extra = {"n": n_con, "tasks": tasks, "writes": "1 in 8", "rounds": r}
            if name != "asyncgo":
                extra["note"] = "a plain lock for reads and writes alike"
            emit("rwmutex_read_mostly", name, backend, v, "ops/s", **extra)
        for bench, measure in (
            ("rwmutex_uncontended_read", rwr),
            ("rwmutex_uncontended_write", rww),
        ):
            for name, v in (await interleaved(rw_peers(backend), n_unc, measure)).items():
                extra = {"n": n_unc, "rounds": r}
                if name != "asyncgo":
                    extra["note"] = "a plain lock (no readers-writer lock in asyncio, anyio, trio)"
                emit(bench, name, backend, v, "ops/s", **extra)
        for name, v in (await interleaved(cond_peers(backend), n_con // 2, cond)).items():
            emit("cond_pingpong", name, backend, v, "round trips/s", n=n_con // 2, rounds=r)
        for name, v in (await interleaved(cond_peers(backend), n_con, condb)).items():
            extra = {"n": n_con, "waiters": 10, "rounds": r}
            emit("cond_broadcast", name, backend, v, "wake-ups/s", **extra)
        for name in ("asyncgo", "lock-per-key cache", "no dedup"):
            v, calls = await sf_rounds(name, rounds, 1000)
            extra = {"rounds": rounds, "requests_per_round": 1000, "calls": calls}
            if name == "lock-per-key cache":
                extra["note"] = (
                    "a dict of anyio.Lock per key; the first request computes and caches "
                    "the value, the rest find it cached (a cache: values never expire)"
                )
            elif name == "no dedup":
                extra["note"] = "every request calls the backend: the calls singleflight saves"
            check(
                calls == (rounds * 1000 if name == "no dedup" else rounds),
                f"singleflight_1000/{name}: {calls} backend calls",
            )
            emit("singleflight_1000", name, backend, v, "requests/s", **extra)
        for name in ("asyncgo", "lock-per-key"):
            await sf_solo(name, 1_000)
            v = await sf_solo(name, n_solo)
            extra = {"n": n_solo}
            if name == "lock-per-key":
                extra["note"] = (
                    "a dict of anyio.Lock per key, the entry dropped after the call; no "
                    "cache: every request calls the function, as a lone singleflight caller does"
                )
            emit("singleflight_solo", name, backend, v, "calls/s", **extra)

    run(bench_main, backend)


if __name__ == "__main__":
    main()
