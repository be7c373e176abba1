"""Seeds 002 §4, 001 §3.3, 003 §3.2, 004 §2.3, 000 §4: cascading cancellation.

Go (seed 002, 级联取消)::

    func main() {
        ctx, cancel := context.WithCancel(context.Background())
        defer cancel()
        for i := 0; i < 5; i++ {
            go worker(ctx, i)
        }
        time.Sleep(3 * time.Second)
        cancel()  // 取消所有worker
        time.Sleep(1 * time.Second)
    }

    func worker(ctx context.Context, id int) {
        for {
            select {
            case <-ctx.Done():
                fmt.Printf("Worker %d stopped\\n", id)
                return
            default:
                fmt.Printf("Worker %d working...\\n", id)
                time.Sleep(500 * time.Millisecond)
            }
        }
    }

Seed 003 §3.2 does the same with ``stop := make(chan struct{})`` and ``close(stop)``.
Seed 001 §3.3 draws the chain HTTP handler -> service -> database -> driver,
where the cancel signal "沿调用链逐层传递". Seed 004 §2.3 lists how that chain
breaks: a layer that passes ``context.Background()`` instead of the ``ctx`` it was
given is never cancelled. Seed 000 §4: never reuse a cancelled context; derive a
new one from a live parent with ``context.WithCancel(parent)``.

asyncgo: ``with_cancel(parent)`` & co. build the same tree; cancelling a node
cancels its whole subtree before ``cancel()`` returns, never its parent or
siblings. The seed's ``select`` with ``default`` is ``select(recv(ctx.done()),
default=True)``; ``ctx.done()`` is a channel like ``stop``, so one worker serves
both. ``with ctx.scope():`` is the structured form: no polling, the body is
cancelled where it waits and raises ``ctx.err()``. The final ``time.Sleep(1 *
time.Second)`` (hoping the workers have stopped) is the task group's block end,
which waits until they have. ``current()`` is the context of the innermost
``scope()``, for a layer that was not handed one.

Run: ``python examples/cascading_cancellation.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import (
    Canceled,
    Chan,
    Context,
    RecvChan,
    background,
    current,
    recv,
    select,
    with_cancel,
    with_timeout,
)
from asyncgo.time import sleep


async def worker(done: RecvChan[None], wid: int, log: dict[int, int]) -> None:
    log[wid] = 0
    while True:
        r = await select(recv(done), default=True)
        if r.index == 0:  # case <-ctx.Done():
            log[wid] = -log[wid]  # negative: stopped after that many rounds
            return
        log[wid] += 1  # default: working...
        await anyio.sleep(0.005)


async def scoped_worker(ctx: Context, wid: int, rounds: list[int]) -> None:
    try:
        with ctx.scope():  # no polling: cancelled where it waits
            while True:
                rounds[wid] += 1
                await anyio.sleep(0.005)
    except Canceled:
        pass  # Go: return when ctx is done


async def query(ctx: Context, name: str, log: list[str]) -> None:
    """The database layer: runs until its ctx ends (a query that never returns)."""
    try:
        await sleep(10, ctx)
    except Canceled:
        log.append(f"{name}: cancelled")


async def service(ctx: Context, log: list[str], buggy: bool) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(query, ctx, "db", log)
        db_ctx = background() if buggy else ctx  # seed 004: the chain broken by Background()
        tg.start_soon(query_with_timeout, db_ctx, log)


async def query_with_timeout(ctx: Context, log: list[str]) -> None:
    with with_timeout(ctx, 0.1) as qctx:  # a child: its own limit, and its parent's
        try:
            await sleep(10, qctx)
        except TimeoutError:
            log.append("cache: timed out on its own 100 ms")  # only when detached
        except Canceled:
            log.append("cache: cancelled")


async def main() -> None:
    # 1. Five workers, one cancel; then the same workers stopped by close(stop).
    log: dict[int, int] = {}
    ctx, cancel = with_cancel(background())
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(worker, ctx.done(), i, log)
        await anyio.sleep(0.03)
        cancel()  # 取消所有worker
    # the block's end waited for every worker: no time.Sleep hoping they stopped
    print("stopped after rounds:", [-n for n in log.values()])
    assert len(log) == 5 and all(n < 0 for n in log.values())

    stop = Chan[None]()
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(worker, stop, i, log)
        await anyio.sleep(0.01)
        stop.close()  # close(stop): every receiver sees it
    assert all(log[i] < 0 for i in range(3))

    rounds = [0] * 3
    ctx, cancel = with_cancel(background())
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(scoped_worker, ctx, i, rounds)
        await anyio.sleep(0.02)
        cancel()
    print("scope() workers ran rounds:", rounds)
    assert all(n > 0 for n in rounds)

    # 2. A tree: cancelling a node ends its subtree only.
    root, cancel_root = with_cancel(background())  # the request
    svc, cancel_svc = with_cancel(root)  # the service layer
    db, _ = with_timeout(svc, 10)  # the database call
    driver, _ = with_cancel(db)  # the driver
    audit, _ = with_cancel(root)  # a sibling of the service
    cancel_svc()
    tree = {"root": root, "svc": svc, "db": db, "driver": driver, "audit": audit}
    states = {name: c.err() for name, c in tree.items()}
    print("cancel(svc):", {n: str(e) if e else "live" for n, e in states.items()})
    assert states["root"] is None and states["audit"] is None
    assert all(isinstance(states[n], Canceled) for n in ("svc", "db", "driver"))
    cancel_root()
    assert isinstance(audit.err(), Canceled)

    # 3. The chain intact, then broken by background() (seed 004 §2.3).
    for buggy in (False, True):
        events: list[str] = []
        req, cancel_req = with_cancel(background())
        async with anyio.create_task_group() as tg:
            tg.start_soon(service, req, events, buggy)
            await anyio.sleep(0.01)
            cancel_req()  # the client went away
        print("broken chain:" if buggy else "intact chain:", events)
        if buggy:
            assert "cache: timed out on its own 100 ms" in events  # ran on, unseen
        else:
            assert sorted(events) == ["cache: cancelled", "db: cancelled"]

    # current(): the innermost scope's context, for a helper not handed one.
    async def helper() -> Context:
        return current()

    with with_cancel(background()) as ctx, ctx.scope():
        assert await helper() is ctx

    # 4. A cancelled context stays cancelled: derive a fresh one from a live parent.
    parent = background()
    first, cancel_first = with_cancel(parent)
    cancel_first()
    try:
        await sleep(0.01, first)  # reusing it fails at once
    except Canceled as e:
        print("reused cancelled ctx:", e)
    else:
        raise AssertionError("a cancelled context cannot run new work")
    retry, cancel_retry = with_cancel(parent)  # 正确方式: WithCancel(parent)
    await sleep(0.001, retry)
    assert retry.err() is None
    cancel_retry()
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
