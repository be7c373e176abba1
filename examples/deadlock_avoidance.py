"""Seed 001 §4.2, 死锁、活锁与资源饥饿的预防策略: lock order, timed lock + backoff, FIFO locks.

The seed's three remedies (its code is Java)::

    // 1. 按资源编号顺序加锁: every thread takes the locks in one global order
    synchronized (Math.min(obj1, obj2)) { synchronized (Math.max(obj1, obj2)) { ... } }

    // 2. tryLock with a timeout, then back off (指数退避) and try again
    if (lock.tryLock(1000, TimeUnit.MILLISECONDS)) {
        try { /* 执行操作 */ } finally { lock.unlock(); }
    } else { /* 超时处理，避免死锁 */ }

    // 3. 公平锁 (Fair Lock): the longest waiter gets the lock first -- no starvation

asyncgo: ``asyncgo.sync.Mutex`` (``async with mu:``). 1: sort the locks by a
global key before taking them; ``debug.detect_deadlocks()`` around the run
would raise ``Deadlock`` (naming who waits for what) if the order were
inverted -- ``examples/diagnose_deadlock.py`` shows that failure. 2: a timed
lock is ``mu.lock()`` inside ``with ctx.scope():`` for a ``with_timeout``
context (it raises ``DeadlineExceeded``, a ``TimeoutError``), and
``asyncgo.retry`` adds the exponential backoff with jitter; ``mu.try_lock()``
is the zero-timeout form. 3: every asyncgo lock serves its waiters first come,
first served, so a long waiter is never overtaken.

Run: ``python examples/deadlock_avoidance.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import background, debug, retry, with_timeout
from asyncgo.resilience import Backoff
from asyncgo.sync import Mutex


class Account:
    def __init__(self, number: int, balance: int) -> None:
        self.number, self.balance = number, balance
        self.lock = Mutex()


async def transfer(src: Account, dst: Account, amount: int) -> None:
    first, second = sorted((src, dst), key=lambda a: a.number)  # one global order
    async with first.lock:
        await anyio.sleep(0)  # the interleaving that deadlocks an unordered version
        async with second.lock:
            src.balance -= amount
            dst.balance += amount


async def lock_within(mu: Mutex, seconds: float) -> None:
    """tryLock(timeout): take *mu*, or raise DeadlineExceeded after *seconds*."""
    with with_timeout(background(), seconds) as ctx, ctx.scope():
        await mu.lock()


async def main() -> None:
    # 1. Opposite transfers at once, locks in a global order: no deadlock.
    a, b = Account(1, 1000), Account(2, 1000)
    with anyio.fail_after(5):
        async with debug.detect_deadlocks():  # would raise Deadlock on an inversion
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(transfer, a, b, 3)
                    tg.start_soon(transfer, b, a, 1)
    print(f"100 opposite transfers: balances {a.balance} + {b.balance}")
    assert (a.balance, b.balance) == (1000 - 100, 1000 + 100)

    # 2. A timed lock, retried with exponential backoff until the holder lets go.
    mu = Mutex()
    await mu.lock()  # someone holds it for a while
    attempts = 0

    async def take() -> None:
        nonlocal attempts
        attempts += 1
        await lock_within(mu, 0.005)

    async with anyio.create_task_group() as tg:

        async def holder() -> None:
            await anyio.sleep(0.03)
            mu.unlock()

        tg.start_soon(holder)
        await retry(take, attempts=20, backoff=Backoff(initial=0.002), retry_on=TimeoutError)
    print(f"timed lock: got it on attempt {attempts}")
    assert attempts > 1 and mu.locked()
    mu.unlock()
    assert mu.try_lock() and not mu.try_lock()  # try_lock: the zero-timeout form
    mu.unlock()

    # 3. FIFO: waiters get the lock in the order they asked for it.
    order: list[int] = []

    async def waiter(n: int) -> None:
        async with mu:
            order.append(n)

    await mu.lock()
    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()  # waiter n is queued before n + 1 starts
        mu.unlock()
    print("FIFO order:", order)
    assert order == [0, 1, 2, 3, 4]
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
