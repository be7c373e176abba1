"""Seeds 000 §2.4, 001 §4.4, 003 §5: errors in goroutines -- error channel, panic/recover.

Go (seed 000, 错误处理模式: a central error channel)::

    errCh := make(chan error, numTasks) // 缓冲通道避免阻塞
    go func() {
        if err := task(); err != nil {
            errCh <- err // 发送错误
        }
    }()
    // 主协程通过 range errCh 统一处理

Go (seed 001, panic 跨 goroutine 传播: recover in every goroutine)::

    go func() {
        defer func() {
            if r := recover(); r != nil {
                log.Printf("recover from: %v", r)
            }
        }()
        panic("goroutine error")
    }()

Go (seed 003, Caddy: a server's error or the shutdown signal, whichever first)::

    errCh := make(chan error, 10)
    go func() {
        if err := server.ListenAndServe(); err != nil {
            errCh <- fmt.Errorf("http server failed: %w", err)
        }
    }()
    select {
    case err := <-errCh:
        log.Fatal(err)
    case <-shutdownSignal:
        // 正常关闭
    }

asyncgo: the error channel is a ``Chan[Exception](n)``, ranged with ``async for``
once the senders are done and it is closed. A ``panic`` is an exception, and an
exception that escapes a task is not lost and does not kill the process: it
cancels the task's siblings (their ``finally`` blocks -- Go's ``defer`` -- run)
and is raised by the task group (``Group`` raises it as itself). ``recover`` is
``try``/``except`` in the task, used where one task's failure must not stop the
others. The Caddy ``select`` is ``select(recv(err_ch), recv(shutdown))``.

Run: ``python examples/error_handling.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Awaitable, Callable

import anyio

from asyncgo import Chan, Group, SendChan, recv, select


async def task(n: int) -> None:
    await anyio.sleep(0.001 * n)
    if n % 3 == 0:
        raise ValueError(f"task {n} failed")


async def report_errors(n: int, err_ch: SendChan[Exception]) -> None:
    try:
        await task(n)
    except Exception as err:
        await err_ch.send(err)  # errCh <- err; never blocks: the buffer holds numTasks


async def recovering(fn: Callable[[int], Awaitable[None]], n: int, recovered: list[str]) -> None:
    """Go's ``defer func() { if r := recover(); r != nil { log... } }()``."""
    try:
        await fn(n)
    except Exception as r:
        recovered.append(f"recover from: {r}")


async def crashes(n: int) -> None:
    await anyio.sleep(0.001)
    raise ZeroDivisionError(f"worker {n}: integer divide by zero")  # Go: a runtime panic


async def long_job(n: int, cleanups: list[int]) -> None:
    try:
        await anyio.sleep(10)
    finally:
        cleanups.append(n)  # Go: defer cleanup() -- runs when the job is cancelled too


async def listen_and_serve(name: str, fails_after: float, err_ch: SendChan[Exception]) -> None:
    await anyio.sleep(fails_after)
    await err_ch.send(OSError(f"{name} server failed: address already in use"))


async def send_signal(after: float, shutdown: Chan[None]) -> None:
    await anyio.sleep(after)
    shutdown.close()  # like a closed done channel: every receiver sees it


async def run_servers(http_fails_after: float, signal_after: float) -> str:
    err_ch = Chan[Exception](10)
    shutdown = Chan[None]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listen_and_serve, "http", http_fails_after, err_ch)
        tg.start_soon(listen_and_serve, "admin", math.inf, err_ch)
        tg.start_soon(send_signal, signal_after, shutdown)
        r = await select(recv(err_ch), recv(shutdown))
        tg.cancel_scope.cancel()  # either way, stop the servers (structured: none outlives us)
    return f"fatal: {r.value}" if r.index == 0 else "graceful shutdown"


async def main() -> None:
    # 1. A central error channel, ranged once every task is done.
    num_tasks = 10
    err_ch = Chan[Exception](num_tasks)
    async with anyio.create_task_group() as tg:
        for n in range(1, num_tasks + 1):
            tg.start_soon(report_errors, n, err_ch)
    err_ch.close()  # every sender is done: close, so that the range ends
    errors = [str(e) async for e in err_ch]  # for err := range errCh
    print("error channel:", errors)
    assert sorted(errors) == ["task 3 failed", "task 6 failed", "task 9 failed"]

    # 2a. No recover: the "panic" cancels the siblings (their finally runs) and is raised.
    cleanups: list[int] = []
    try:
        async with Group() as g:
            await g.go(long_job, 1, cleanups)
            await g.go(long_job, 2, cleanups)
            await g.go(crashes, 3)
    except ZeroDivisionError as e:
        print("unrecovered:", e, "| siblings cleaned up:", sorted(cleanups))
    else:
        raise AssertionError("the crash should have been raised")
    assert sorted(cleanups) == [1, 2]

    # 2b. recover in each task: one task's failure does not stop the others.
    recovered: list[str] = []
    finished: list[int] = []

    async def fine(n: int) -> None:
        await anyio.sleep(0.002)
        finished.append(n)

    async with Group() as g:
        await g.go(recovering, crashes, 1, recovered)
        await g.go(recovering, fine, 2, recovered)
        await g.go(recovering, fine, 3, recovered)
    print("recovered:", recovered, "| finished:", sorted(finished))
    assert recovered == ["recover from: worker 1: integer divide by zero"]
    assert sorted(finished) == [2, 3] and g.errors == []

    # 3. Caddy: the first server error, or the shutdown signal, whichever comes first.
    outcome = await run_servers(http_fails_after=0.01, signal_after=5)
    print("server error first:", outcome)
    assert outcome == "fatal: http server failed: address already in use"
    outcome = await run_servers(http_fails_after=5, signal_after=0.01)
    print("signal first:", outcome)
    assert outcome == "graceful shutdown"
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
