"""Seeds 000 §3, 001 §2.3/§2.5/§4.1, 003 §5: state isolation -- share memory by communicating.

Seed 000 (状态隔离模式): each goroutine keeps its own state and only copies travel;
e.g. a counter service whose state is updated by one goroutine, results sent back
on channels. Seed 003 §5 (etcd's raft): the state machine runs in its own
goroutine, fed log entries through a channel -- "no explicit lock". The
alternatives the seeds show::

    var mu sync.Mutex                    // seed 001 §2.3
    var counter int
    func increment() { mu.Lock(); defer mu.Unlock(); counter++ }

    var rwMu sync.RWMutex                // seed 001 §2.3: many readers, one writer
    func read() string { rwMu.RLock(); defer rwMu.RUnlock(); return data["key"] }

    func increment() {                   // seed 001 §2.5: lock-free CAS loop
        for {
            old := atomic.LoadInt64(&counter)
            if atomic.CompareAndSwapInt64(&counter, old, old+1) { break }
        }
    }

    for i := 0; i < 1000; i++ { go func() { counter++ }() }   // seed 001 §4.1: a data race

asyncgo: the owner is a task reading requests from a ``Chan``; each request
carries its own reply channel, and replies are copies, so no other task can
touch the state. The alternatives, honestly: tasks on one event loop switch only
at an ``await``, so ``counter += 1`` (no ``await`` inside) is already atomic --
there is no ``atomic`` package because there is nothing for it to do, and the
seed's 1000-goroutine race cannot happen. The race that remains is a
read-modify-write with an ``await`` in the middle: shown below losing updates,
then fixed by the owner task or by ``asyncgo.sync.Mutex``; ``RWMutex`` lets
readers overlap while a writer is alone.

Run: ``python examples/state_isolation.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import anyio

from asyncgo import Chan, RecvChan, SendChan
from asyncgo.sync import Mutex, RWMutex

CLIENTS = 50
INCREMENTS = 10


@dataclass
class Incr:
    key: str
    delta: int
    reply: SendChan[int]  # the new value comes back here


@dataclass
class Snapshot:
    reply: SendChan[dict[str, int]]


async def counter_service(requests: RecvChan[Incr | Snapshot]) -> None:
    counts: dict[str, int] = {}  # owned by this task: nobody else can reach it
    async for req in requests:  # ends when the requests channel is closed
        match req:
            case Incr(key, delta, reply):
                counts[key] = counts.get(key, 0) + delta
                await reply.send(counts[key])
            case Snapshot(reply):
                await reply.send(dict(counts))  # a copy, never the state itself


async def client(requests: SendChan[Incr | Snapshot], key: str) -> None:
    reply = Chan[int](1)
    for _ in range(INCREMENTS):
        await requests.send(Incr(key, 1, reply))
        await reply.recv()
        await anyio.sleep(0)  # interleave with the other clients


async def apply_log(entries: RecvChan[str], applied: SendChan[tuple[int, str]]) -> None:
    """etcd's raft node in miniature: the only task that touches the log."""
    log: list[str] = []
    async for entry in entries:
        log.append(entry)
        await applied.send((len(log), entry))  # r.applyCh <- ApplyMsg{...}
    applied.close()


async def main() -> None:
    # 1. The owner task.
    requests = Chan[Incr | Snapshot]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(counter_service, requests.recv_only())
        async with anyio.create_task_group() as clients:
            for i in range(CLIENTS):
                clients.start_soon(client, requests.send_only(), f"k{i % 5}")
        snap = Chan[dict[str, int]](1)
        await requests.send(Snapshot(snap))
        counts = await snap.recv()
        requests.close()  # the service's range ends; the outer block waits for it
    print("owner task:", counts)
    assert counts == {f"k{i}": CLIENTS // 5 * INCREMENTS for i in range(5)}

    # 2. The race that exists: read, await, write.
    total = CLIENTS * INCREMENTS
    counter = 0

    async def racy_increment() -> None:
        nonlocal counter
        for _ in range(INCREMENTS):
            current = counter
            await anyio.sleep(0)  # another task runs here and reads the same value
            counter = current + 1

    async with anyio.create_task_group() as tg:
        for _ in range(CLIENTS):
            tg.start_soon(racy_increment)
    print(f"read-await-write without a lock: {counter} of {total}")
    assert counter < total, "updates should have been lost"

    # 3. The same with a Mutex held across the await (seed 001 §2.3).
    counter = 0
    mu = Mutex()

    async def locked_increment() -> None:
        nonlocal counter
        for _ in range(INCREMENTS):
            async with mu:  # mu.Lock(); defer mu.Unlock()
                current = counter
                await anyio.sleep(0)
                counter = current + 1

    async with anyio.create_task_group() as tg:
        for _ in range(CLIENTS):
            tg.start_soon(locked_increment)
    print(f"with Mutex: {counter} of {total}")
    assert counter == total

    # 4. The seeds' counter++ race and CAS loop: no await inside, nothing to guard.
    counter = 0

    async def plain_increment() -> None:
        nonlocal counter
        counter += 1  # atomic with respect to other tasks: there is no await in it

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(plain_increment)
    print(f"1000 tasks doing counter += 1: {counter}")
    assert counter == 1000

    # 5. RWMutex: readers overlap, a writer is alone.
    rw = RWMutex()
    data = {"key": "v0"}
    readers = peak_readers = 0
    writer_saw_readers: list[int] = []

    async def reader() -> None:
        nonlocal readers, peak_readers
        async with rw.read():  # RLock / RUnlock
            readers += 1
            peak_readers = max(peak_readers, readers)
            assert data["key"].startswith("v")
            await anyio.sleep(0.002)
            readers -= 1

    async def writer(i: int) -> None:
        async with rw.write():  # Lock / Unlock
            writer_saw_readers.append(readers)
            data["key"] = f"v{i}"
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(reader)
            if i % 10 == 9:
                tg.start_soon(writer, i)
    print(
        f"RWMutex: up to {peak_readers} readers at once; writers saw readers: {writer_saw_readers}"
    )
    assert peak_readers > 1 and writer_saw_readers == [0, 0]

    # 6. etcd: log entries applied in order by the one task that owns the log.
    entries = Chan[str](8)
    applied = Chan[tuple[int, str]](8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(apply_log, entries.recv_only(), applied.send_only())
        for cmd in ("put a=1", "put b=2", "del a"):
            await entries.send(cmd)
        entries.close()
        msgs = [m async for m in applied]
    print("applied:", msgs)
    assert msgs == [(1, "put a=1"), (2, "put b=2"), (3, "del a")]
    print("ok")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()
