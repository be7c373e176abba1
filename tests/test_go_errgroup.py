"""Go's own errgroup tests (golang.org/x/sync/errgroup: errgroup_test.go and its
examples), ported to asyncgo's `Group`.

The Go API maps as DESIGN.md "Group (errgroup)" and docs/group.md say:
``errgroup.WithContext(ctx)`` -> ``async with Group(ctx) as g:`` and ``g.ctx``;
``g.SetLimit(n)`` -> ``Group(limit=n)``; ``g.Go(f)`` -> ``await g.go(f)``;
``g.TryGo(f)`` -> ``g.try_go(f)``; ``err := g.Wait()`` -> leaving the block, which
raises the first error as itself. A Go function returning a non-nil error is a task
raising that exception; returning nil is returning normally.

Differences from Go that shape the ports (all documented in docs/group.md):

* A Go ``Group`` can be waited on and reused (``Go`` after ``Wait``); an asyncgo group
  is one ``async with`` block. TestZeroGroup and TestTryGo use one group per ``Wait``.
* The first error cancels the other tasks and the body, not only ``ctx``; so where Go
  starts tasks after an error, the ports start them all before any can fail.
* ``SetLimit(0)`` (no task may start) and negative limits (no limit) have no
  counterpart: ``Group(limit=0)`` / ``limit=-1`` raise ValueError and ``limit=None``
  means no limit. The last phase of TestTryGo checks that instead.

Not ported: BenchmarkGo (benchmarks/bench_group.py measures spawning); the panic /
Goexit tests of newer errgroup versions have no Python counterpart beyond
"KeyboardInterrupt and SystemExit pass through unwrapped", ported as
test_panic_analogue.
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import pytest

from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    Context,
    Group,
    WouldBlock,
    background,
    current,
    recv,
    select,
    send,
    with_cancel,
)

pytestmark = pytest.mark.anyio

QUIESCENT = 30.0  # a bound on waiting, never a timing assertion


def is_done(ctx: Context) -> bool:
    try:
        ctx.done().recv_nowait()
    except WouldBlock:
        return False
    except ChanClosed:
        return True
    raise AssertionError("a done channel never delivers a value")


class ErrgroupError(Exception):
    """Go: ``errors.New("errgroup_test: 1")``."""


err1 = ErrgroupError("errgroup_test: 1")
err2 = ErrgroupError("errgroup_test: 2")
err_doom = ErrgroupError("group_test: doomed")


async def run_in_order(g: Group, errs: list[BaseException | None], go: str = "go") -> None:
    """Start one task per entry of *errs*, each returning or raising it, in that order.

    The tasks end one after another (task i waits for task i-1 to end, however it ended),
    so "the first error" is the same on every backend, as it is in Go's sequential tests.
    """
    prev: anyio.Event | None = None
    for err in errs:
        done = anyio.Event()

        async def task(err: BaseException | None, prev: Any, done: anyio.Event) -> None:
            try:
                if prev is not None:
                    with anyio.CancelScope(shield=True):  # see the previous one end
                        await prev.wait()
                if err is not None:
                    raise err
            finally:
                done.set()

        if go == "go":
            await g.go(task, err, prev, done)
        else:
            assert g.try_go(task, err, prev, done)
        prev = done


# -- TestZeroGroup ------------------------------------------------------------------------

ZERO_GROUP_CASES: list[list[BaseException | None]] = [
    [],
    [None],
    [err1],
    [err1, None],
    [err1, None, err2],
]


@pytest.mark.parametrize("errs", ZERO_GROUP_CASES)
async def test_zero_group(errs: list[BaseException | None]) -> None:
    # Go calls g.Go and g.Wait for each prefix on one group; here each prefix gets a
    # group of its own (an asyncgo group is one block), with no ctx and no limit.
    first: BaseException | None = None
    for i, err in enumerate(errs):
        if first is None and err is not None:
            first = err
        g = Group()
        try:
            async with g:
                await run_in_order(g, errs[: i + 1])
        except ErrgroupError as e:
            assert e is first, f"for errs {errs[: i + 1]}: raised {e!r}, want {first!r}"
        else:
            assert first is None, f"for errs {errs[: i + 1]}: raised nothing, want {first!r}"
        assert g.errors == [e for e in errs[: i + 1] if e is not None][: len(g.errors)]
        assert g.errors[:1] == ([first] if first is not None else [])


async def test_zero_group_empty_wait() -> None:
    async with Group() as g:
        pass
    assert g.errors == []


# -- TestWithContext, TestCancelCause -------------------------------------------------------

WITH_CONTEXT_CASES: list[tuple[list[BaseException | None], BaseException | None]] = [
    ([], None),
    ([None], None),
    ([err_doom], err_doom),
    ([err_doom, None], err_doom),
]


@pytest.mark.parametrize(("errs", "want"), WITH_CONTEXT_CASES)
@pytest.mark.parametrize("go", ["go", "try_go"])  # TestWithContext, TestCancelCause
async def test_with_context(errs: list[BaseException | None], want: Any, go: str) -> None:
    g = Group(background())
    try:
        async with g:
            await run_in_order(g, errs, go)
    except ErrgroupError as e:
        assert e is want
    else:
        assert want is None
    # Go: ctx.Done() is closed after Wait, whether or not a task failed.
    assert is_done(g.ctx)
    r = await select(recv(g.ctx.done()), default=True)
    assert r.index == 0
    assert type(g.ctx.err()) is Canceled
    # Go (TestCancelCause): context.Cause(ctx) is the first error, else Canceled.
    if want is None:
        assert g.ctx.cause() is g.ctx.err()
    else:
        assert g.ctx.cause() is want


async def test_with_context_error_cancels_ctx_before_wait() -> None:
    # Go: "The derived Context is canceled the first time a function passed to Go
    # returns a non-nil error" -- the other tasks see it while the group still runs.
    seen: list[Any] = []

    async def watcher(ctx: Context) -> None:
        await ctx.wait()
        seen.append(ctx.cause())

    async def fail() -> None:
        raise err_doom

    with pytest.raises(ErrgroupError) as info:
        async with Group() as g:
            await g.go(watcher, g.ctx)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail)
    assert info.value is err_doom
    assert seen == [err_doom]


async def test_with_context_is_derived_from_the_parent() -> None:
    parent, cancel = with_cancel(background())
    async with Group(parent) as g:
        assert g.ctx is not parent and g.ctx.err() is None
        assert current() is g.ctx
    assert parent.err() is None  # Wait cancels the group's ctx, not its parent
    cancel()


# -- TestTryGo ------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_try_go() -> None:
    n = 42
    ch: Chan[None] = Chan()

    async def fn() -> None:
        await ch.send(None)

    async with Group(limit=42) as g:
        for i in range(n):
            assert g.try_go(fn), f"TryGo should succeed but got fail at {i}-th call"
        assert not g.try_go(fn), "TryGo is expected to fail but succeeded"
        for _ in range(n):
            await ch.recv()

    # Go reuses the group after Wait; here: a new one with the same limit.
    async with Group(limit=42) as g:
        assert g.try_go(fn), "TryGo should succeed after all goroutines ended"
        await ch.recv()

    # Switch limit.
    async with Group(limit=1) as g:
        assert g.try_go(fn), "TryGo should succeed"
        assert not g.try_go(fn), "TryGo should fail"
        await ch.recv()

    # Go: SetLimit(0) blocks all calls. asyncgo has no zero limit: it is a ValueError.
    with pytest.raises(ValueError, match="limit must be at least 1"):
        Group(limit=0)


async def test_try_go_slot_freed_when_a_task_ends() -> None:
    # Within one group: once a task has ended, its slot is free for TryGo again.
    ch: Chan[None] = Chan()

    async def fn() -> None:
        await ch.send(None)

    async with Group(limit=2) as g:
        assert g.try_go(fn) and g.try_go(fn)
        assert not g.try_go(fn)
        await ch.recv()
        with anyio.fail_after(QUIESCENT):
            while not g.try_go(fn):  # the sender ends soon after its value is taken
                await anyio.sleep(0)
        assert not g.try_go(fn)
        await ch.recv()
        await ch.recv()


# -- TestGoLimit ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_go_limit() -> None:
    limit = 10
    active = 0
    most = 0
    full = anyio.Event()  # the first `limit` tasks wait for each other: the limit is reached

    async def task() -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        if active > limit:
            raise AssertionError(f"saw {active} active tasks; want <= {limit}")
        if active == limit:
            full.set()
        await full.wait()
        await anyio.sleep(0)  # give the others a chance to increment active
        active -= 1

    async with Group(limit=limit) as g:
        for _ in range((1 << 10) + 1):
            await g.go(task)
    assert active == 0
    assert most == limit  # the limit is reached, not only respected


# -- ExampleGroup_justErrors, ExampleGroup_parallel ----------------------------------------


async def test_example_just_errors() -> None:
    fetched: list[str] = []

    async def http_get(url: str) -> None:
        await anyio.sleep(0)
        if "somestupidname" in url:
            raise ConnectionError(f"no such host: {url}")
        fetched.append(url)

    urls = ["http://www.golang.org/", "http://www.google.com/", "http://www.somestupidname.com/"]
    with pytest.raises(ConnectionError, match="somestupidname"):
        async with Group() as g:
            for url in urls:
                await g.go(http_get, url)
    assert "http://www.somestupidname.com/" not in fetched


def fake_search(kind: str) -> Any:
    async def search(ctx: Context, query: str) -> str:
        await anyio.sleep(0)
        return f'{kind} result for "{query}"'

    return search


async def google(ctx: Context, query: str) -> list[str]:
    searches = [fake_search("web"), fake_search("image"), fake_search("video")]
    results: list[str] = [""] * len(searches)
    async with Group(ctx) as g:

        async def run(i: int, search: Any) -> None:
            results[i] = await search(g.ctx, query)

        for i, search in enumerate(searches):
            await g.go(run, i, search)
    return results


async def test_example_parallel() -> None:
    assert await google(background(), "golang") == [
        'web result for "golang"',
        'image result for "golang"',
        'video result for "golang"',
    ]


# -- ExampleGroup_pipeline (example_md5all_test.go) -----------------------------------------


async def md5_all(ctx: Context, files: dict[str, bytes | Exception]) -> dict[str, str]:
    """Go's MD5All: a walker, 20 digesters and a collector, linked by channels.

    Go closes the results channel from a goroutine that waits for the group; in
    structured form the digesters get a group of their own, whose task closes it.
    """
    results: dict[str, str] = {}
    async with Group(ctx) as g:
        paths: Chan[str] = Chan()
        c: Chan[tuple[str, str]] = Chan()

        async def walk() -> None:
            try:
                for path in sorted(files):
                    r = await select(send(paths, path), recv(g.ctx.done()))
                    if r.index == 1:
                        raise g.ctx.err()  # type: ignore[misc]
            finally:
                paths.close()

        async def digester() -> None:
            async for path in paths:
                data = files[path]
                if isinstance(data, Exception):
                    raise data  # Go: ioutil.ReadFile failed
                r = await select(send(c, (path, hashlib.md5(data).hexdigest())), recv(g.ctx.done()))
                if r.index == 1:
                    raise g.ctx.err()  # type: ignore[misc]

        async def digesters() -> None:
            try:
                async with Group(g.ctx) as dg:
                    for _ in range(20):
                        await dg.go(digester)
            finally:
                c.close()

        await g.go(walk)
        await g.go(digesters)
        async for path, digest in c:
            results[path] = digest
    return results


@pytest.mark.usefixtures("no_leaks")
async def test_example_pipeline() -> None:
    files: dict[str, bytes | Exception] = {f"f{i:03}": bytes([i]) * i for i in range(100)}
    with anyio.fail_after(QUIESCENT):
        got = await md5_all(background(), files)
    assert got == {p: hashlib.md5(d).hexdigest() for p, d in files.items()}  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_leaks")
async def test_example_pipeline_error() -> None:
    bad = PermissionError("f050: permission denied")
    files: dict[str, bytes | Exception] = {f"f{i:03}": bytes([i]) for i in range(100)}
    files["f050"] = bad
    with anyio.fail_after(QUIESCENT):
        with pytest.raises(PermissionError) as info:
            await md5_all(background(), files)
    assert info.value is bad


@pytest.mark.usefixtures("no_leaks")
async def test_example_pipeline_parent_cancelled() -> None:
    ctx, cancel = with_cancel(background())
    files: dict[str, bytes | Exception] = {f"f{i:03}": bytes([i]) for i in range(100)}
    cancel()
    with anyio.fail_after(QUIESCENT):
        with pytest.raises(Canceled):
            await md5_all(ctx, files)


# -- TestPanic (newer errgroup): a panic goes through Wait ----------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.usefixtures("no_leaks")
async def test_panic_analogue(exc_type: type[BaseException]) -> None:
    # Go re-panics in Wait with the value the goroutine panicked with; the nearest
    # Python analogue is a BaseException that is not an error: it comes out of the
    # block as itself (not wrapped), after the other tasks were cancelled, and wins
    # over an ordinary error, whichever of the two happened first.
    p = exc_type()
    cancelled: list[bool] = []

    async def sleeper() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def fail() -> None:
        raise err1

    async def panic() -> None:
        raise p

    with pytest.raises(exc_type) as info:
        async with Group() as g:
            await g.go(sleeper)
            await anyio.wait_all_tasks_blocked()
            g.try_go(fail)
            g.try_go(panic)
    assert info.value is p
    assert cancelled == [True]
    assert g.errors == [err1]
