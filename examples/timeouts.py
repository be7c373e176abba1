"""Seeds 002 §4, 000 §2.4, 001 §3.3, 004 §5: timeouts -- time.After, context.WithTimeout.

Go (seed 002, 超时模式)::

    func doWorkWithTimeout(timeout time.Duration) (string, error) {
        resultCh := make(chan string, 1)
        go func() {
            time.Sleep(2 * time.Second) // 模拟耗时工作
            resultCh <- "work done"
        }()
        select {
        case result := <-resultCh:
            return result, nil
        case <-time.After(timeout):
            return "", errors.New("timeout")
        }
    }

    func doWorkWithContext(ctx context.Context) (string, error) {
        resultCh := make(chan string, 1)
        go func() {
            time.Sleep(2 * time.Second)
            select {
            case resultCh <- "work done":
            case <-ctx.Done():
            }
        }()
        select {
        case result := <-resultCh:
            return result, nil
        case <-ctx.Done():
            return "", ctx.Err()
        }
    }

Go (seeds 000 and 001: ``context.WithTimeout`` + ``select``, passed down the calls)::

    ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
    defer cancel()
    result, err := longRunningOperation(ctx)

Go (seed 004 §5: a fallback timer in a handler, stopped when the handler returns)::

    timer := time.AfterFunc(5*time.Second, func() { triggerFallback(ctx) })
    defer timer.Stop() // 关键：防止 goroutine 泄漏

asyncgo: ``select(recv(result_ch), recv(after(timeout)))`` is the first select as
written. One thing differs, on purpose: a Go goroutine that lost the race keeps
running (the buffer of one lets it finish instead of leaking); a task cannot
outlive its task group, so the function cancels the group's scope right after the
select (``tg.cancel_scope.cancel()``) and the loser is *cancelled* there -- nothing
runs on after the timeout. Without that line the block would wait for the loser (and,
with an unbuffered result channel, forever). ``with with_timeout(parent, s) as ctx`` is
``WithTimeout`` + ``defer cancel()``; ``ctx.scope()`` stops the body when ctx ends
and raises ``DeadlineExceeded`` (a ``TimeoutError``), and ``sleep(s, ctx)`` is the
seeds' ``select`` between a sleep and ``ctx.Done()``. A child context never
outlives its parent's deadline. ``asyncgo.time.after_func`` is
``time.AfterFunc``. The seeds' seconds are milliseconds here.

Run: ``python examples/timeouts.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import (
    Chan,
    Context,
    DeadlineExceeded,
    background,
    recv,
    select,
    send,
    with_timeout,
)
from asyncgo.time import after, after_func, sleep

WORK = 0.05  # the seed's 2 s of work


async def work(result_ch: Chan[str], finished: list[str]) -> None:
    await anyio.sleep(WORK)  # time.Sleep(2 * time.Second)
    finished.append("work done")
    await result_ch.send("work done")


async def do_work_with_timeout(timeout: float, finished: list[str]) -> str:
    result_ch = Chan[str](1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(work, result_ch, finished)
        r = await select(recv(result_ch), recv(after(timeout)))
        tg.cancel_scope.cancel()  # the loser does not run on: it is cancelled here
    if r.index == 1:
        raise TimeoutError("timeout")
    assert isinstance(r.value, str)
    return r.value


async def work_with_context(ctx: Context, result_ch: Chan[str]) -> None:
    await anyio.sleep(WORK)  # time.Sleep(2 * time.Second)
    await select(send(result_ch, "work done"), recv(ctx.done()))


async def do_work_with_context(ctx: Context) -> str:
    result_ch = Chan[str](1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(work_with_context, ctx, result_ch)
        r = await select(recv(result_ch), recv(ctx.done()))
        tg.cancel_scope.cancel()
    if r.index == 1:
        err = ctx.err()
        assert err is not None
        raise err  # return "", ctx.Err()
    assert r.value is not None
    return r.value


async def query_db(ctx: Context) -> str:
    with ctx.scope():  # Go: db.QueryContext(ctx, ...): stops when ctx ends
        await anyio.sleep(WORK)
    return "rows"


async def long_running_operation(ctx: Context) -> str:
    await sleep(0.001, ctx)  # a pause that ends early, raising ctx.err(), when ctx does
    return await query_db(ctx)  # pass ctx down: the first argument, as in Go


async def handle(ctx: Context, slow: bool, fallbacks: list[str]) -> str:
    timer = after_func(0.02, lambda: fallbacks.append("fallback"))  # time.AfterFunc
    try:
        await anyio.sleep(0.04 if slow else 0.001)
        return "handled"
    finally:
        timer.stop()  # defer timer.Stop()


async def main() -> None:
    # 1. select with time.After.
    finished: list[str] = []
    assert await do_work_with_timeout(1.0, finished) == "work done"
    try:
        await do_work_with_timeout(0.01, finished)
    except TimeoutError as e:
        print("doWorkWithTimeout(10 ms):", e)
    else:
        raise AssertionError("should have timed out")
    await anyio.sleep(2 * WORK)
    print("  late work finished after the timeout?", len(finished) > 1)
    assert finished == ["work done"], "the losing worker must not run on"

    # 2. select on ctx.Done().
    with with_timeout(background(), 1.0) as ctx:
        assert await do_work_with_context(ctx) == "work done"
    with with_timeout(background(), 0.01) as ctx:
        try:
            await do_work_with_context(ctx)
        except DeadlineExceeded as e:
            print("doWorkWithContext(10 ms):", e)
        else:
            raise AssertionError("should have timed out")

    # 3. WithTimeout passed down the call chain; the earlier deadline wins.
    with with_timeout(background(), 1.0) as ctx:
        print("longRunningOperation:", await long_running_operation(ctx))
    with with_timeout(background(), 0.01) as parent:
        with with_timeout(parent, 10.0) as child:  # asks for 10 s, gets the parent's 10 ms
            assert child.deadline() == parent.deadline()
            try:
                await long_running_operation(child)
            except TimeoutError as e:  # DeadlineExceeded is a TimeoutError
                print("under a 10 ms parent:", repr(e))
            else:
                raise AssertionError("the parent's deadline should have won")

    # 4. A fallback timer in a handler, stopped on return.
    fallbacks: list[str] = []
    assert await handle(background(), slow=False, fallbacks=fallbacks) == "handled"
    await anyio.sleep(0.03)  # past the 20 ms: a stopped timer never fires
    assert fallbacks == []
    await handle(background(), slow=True, fallbacks=fallbacks)
    print("AfterFunc: fast handler -> no fallback; slow handler ->", fallbacks)
    assert fallbacks == ["fallback"]
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
