"""Diagnose a deadlock: Go's "all goroutines are asleep", caught and explained.

Seeds 000 §4 (通道死锁), 001 §4.2 and 004 §2.2. Two transfers take two locks in
opposite orders (the classic lock-order inversion), and a pipeline stage sends
on an unbuffered channel nobody reads. Without `debug.detect_deadlocks()` both
programs hang forever; with it, each fails at once with `asyncgo.Deadlock`,
naming the tasks, what they wait on and the line that made each primitive. The
fix for each is printed after the report (``examples/deadlock_avoidance.py``
applies the lock-order one).

Run: ``python examples/diagnose_deadlock.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import Chan, Deadlock, debug
from asyncgo.sync import Mutex, WaitGroup


async def transfer(src: Mutex, dst: Mutex, both_locked: WaitGroup) -> None:
    async with src:
        both_locked.done()
        await both_locked.wait()  # make the bad interleaving certain
        async with dst:
            pass


async def lock_inversion() -> None:
    accounts, ledger = Mutex(), Mutex()
    both_locked = WaitGroup()
    both_locked.add(2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(transfer, accounts, ledger, both_locked, name="debit")
        tg.start_soon(transfer, ledger, accounts, both_locked, name="credit")


async def produce(results: Chan[int]) -> None:
    for i in range(3):
        await results.send(i * i)  # nobody receives: the caller forgot to
    results.close()


async def forgotten_receiver() -> None:
    results = Chan[int]()  # unbuffered: every send waits for a receiver
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce, results, name="producer")
    # ... the results were meant to be read here, inside the block


async def main() -> None:
    reports: dict[str, str] = {}
    for program, fix in (
        (lock_inversion, "fix: take the locks in one global order (accounts, then ledger)"),
        (forgotten_receiver, "fix: read the results inside the task group, or buffer them"),
    ):
        try:
            with anyio.fail_after(10):
                async with debug.detect_deadlocks():
                    await program()
        except Deadlock as e:
            print(f"== {program.__name__}: asyncgo.Deadlock")
            print(e)
            print(fix)
            print()
            reports[program.__name__] = str(e)
        else:
            raise AssertionError(f"{program.__name__} should have deadlocked")
    assert "[mutex lock, " in reports["lock_inversion"]
    assert "[chan send, " in reports["forgotten_receiver"]
    print("ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    args = p.parse_args()
    if args.backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=args.backend)
