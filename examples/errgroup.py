"""Seeds 002 §5 and 004 §3.2, errgroup: the first error cancels the others.

Go (seed 002, errgroup模式)::

    func fetchURLs(urls []string) error {
        g, ctx := errgroup.WithContext(context.Background())
        for _, url := range urls {
            url := url  // 捕获变量
            g.Go(func() error {
                return fetch(ctx, url)   // NewRequestWithContext(ctx, ...); not 200 -> error
            })
        }
        return g.Wait()  // 如果任何一个返回错误，立即返回
    }

Go (seed 004, syncUserData)::

    g, ctx := errgroup.WithContext(ctx)
    for _, uid := range users {
        uid := uid
        g.Go(func() error {
            select {
            case <-time.After(500 * time.Millisecond):
                return fmt.Errorf("timeout fetching user %s", uid)
            case <-ctx.Done():
                return ctx.Err()
            }
        })
    }
    return g.Wait()

asyncgo: ``async with Group(ctx) as g:`` then ``await g.go(fetch, g.ctx, url)``
(the function and its arguments: nothing for a loop variable to capture).
Leaving the block is ``g.Wait()``: it raises the first error *as itself*, after
cancelling ``g.ctx`` (cause: that error) and every other task -- a task blocked
in an await is cancelled where it waits, whether or not it watches
``ctx.done()``; the seed's ``select`` on ``ctx.done()`` works as is.
``g.errors`` lists every error. ``Group(ctx, limit=n)`` is ``g.SetLimit(n)``;
``g.go`` returns a handle holding the task's result. The seed's 500 ms are 50 ms
here.

Run: ``python examples/errgroup.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import time

import anyio

from asyncgo import (
    Canceled,
    Context,
    DeadlineExceeded,
    Group,
    background,
    recv,
    select,
    with_timeout,
)
from asyncgo.time import after, sleep


class BadStatus(Exception):
    """A response that is not 200 (the seed's ``fmt.Errorf("bad status: %d")``)."""


# url -> (seconds the request takes, status): a fake web for a self-contained example.
WEB = {
    "https://go.dev/": (0.01, 200),
    "https://pkg.go.dev/": (0.02, 200),
    "https://example.com/missing": (0.03, 404),
    "https://slow.example.com/": (5.0, 200),  # would take 5 s: cancelled by the 404
}


async def fetch(ctx: Context, url: str, log: dict[str, str]) -> int:
    latency, status = WEB[url]
    log[url] = "started"
    try:
        await sleep(latency, ctx)  # the request: cut short when ctx ends
    except BaseException:
        log[url] = "interrupted"
        raise
    log[url] = f"status {status}"
    if status != 200:
        raise BadStatus(f"bad status: {status} ({url})")
    return status


async def fetch_urls(urls: list[str], log: dict[str, str]) -> None:
    async with Group(background()) as g:  # Go: g, ctx := errgroup.WithContext(...)
        for url in urls:
            await g.go(fetch, g.ctx, url, log)  # Go: g.Go(func() error { return fetch(ctx, url) })
    # leaving the block is g.Wait(): it raised if any fetch failed


async def sync_user(ctx: Context, uid: str, latency: float, synced: list[str]) -> None:
    answered = after(latency)  # stands for the user service answering
    r = await select(recv(answered), recv(after(0.05)), recv(ctx.done()))
    if r.index == 0:
        synced.append(uid)
    elif r.index == 1:
        raise TimeoutError(f"timeout fetching user {uid}")
    else:
        err = ctx.err()
        assert err is not None
        raise err  # Go: return ctx.Err()


async def main() -> None:
    # 1. fetchURLs: the 404 ends the group; the 5 s request is cancelled, not awaited.
    log: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        await fetch_urls(list(WEB), log)
    except BadStatus as e:  # the first error, as itself: no ExceptionGroup to unwrap
        print("fetchURLs:", e)
        first = e
    else:
        raise AssertionError("the 404 should have failed the group")
    took = time.perf_counter() - t0
    print("  ", log, f"{took:.2f} s")
    assert "404" in str(first)
    assert log["https://go.dev/"] == "status 200" and log["https://pkg.go.dev/"] == "status 200"
    assert log["https://slow.example.com/"] == "interrupted"
    assert took < 4, "the slow request should have been cancelled"

    # 2. syncUserData: u3 times out; u4, still waiting, is cancelled by that error.
    synced: list[str] = []
    users = {"u1": 0.005, "u2": 0.01, "u3": 1.0, "u4": 2.0}
    try:
        async with Group() as g:
            for uid, latency in users.items():
                await g.go(sync_user, g.ctx, uid, latency, synced)
    except TimeoutError as e:
        print("syncUserData:", e, "| synced:", sorted(synced))
        print("   g.ctx:", g.ctx.err(), "/ cause:", g.ctx.cause())
        assert str(e) in ("timeout fetching user u3", "timeout fetching user u4")
        assert g.errors[0] is e and g.ctx.cause() is e
        assert isinstance(g.ctx.err(), Canceled)
    else:
        raise AssertionError("u3 should have timed out")
    assert sorted(synced) == ["u1", "u2"]

    # 3. SetLimit and results: at most 2 fetches at a time, every result kept.
    running = peak = 0

    async def square(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.005)
        running -= 1
        return n * n

    async with Group(limit=2) as g:  # Go: g.SetLimit(2)
        handles = [await g.go(square, n) for n in range(6)]
    results = [h.result() for h in handles]
    print("limit=2:", results, "peak concurrency", peak)
    assert results == [n * n for n in range(6)] and peak == 2

    # 4. The parent context's deadline cuts the whole group short.
    with with_timeout(background(), 0.02) as ctx:
        try:
            async with Group(ctx) as g:
                for uid in ("u5", "u6"):
                    await g.go(sync_user, g.ctx, uid, 10.0, synced)
        except DeadlineExceeded as e:
            print("parent deadline:", repr(e))
        else:
            raise AssertionError("the parent deadline should have ended the group")
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
