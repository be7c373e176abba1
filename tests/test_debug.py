"""asyncgo.debug: tasks(), dump(), num_tasks(), labels(), enable(), and the HTTP endpoint."""

from __future__ import annotations

import contextlib
import inspect
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncgo import Canceled, Chan, background, debug, recv, select, with_cancel
from asyncgo import time as gotime
from asyncgo._backend import _diag
from asyncgo.sync import Mutex

pytestmark = pytest.mark.anyio

#: Tests of the default (diagnostics off) opt out of the asyncgo pytest plugin's
#: deadlock detection, which turns them on for every test when the plugin is loaded.
DEFAULT_STATE = (
    pytest.mark.asyncgo_detect_deadlocks(False)
    if "asyncgo.testing.pytest_plugin" in sys.modules
    else pytest.mark.anyio
)


def here() -> int:
    """The caller's line number (where the next primitive is made)."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


@pytest.fixture
def diagnostics() -> Iterator[None]:
    with debug.enabled():
        yield


def by_name(infos: list[debug.TaskInfo], name: str) -> debug.TaskInfo:
    found = [t for t in infos if t.name == name]
    assert len(found) == 1, [t.name for t in infos]
    return found[0]


async def receiver(ch: Chan[int]) -> None:
    await ch.recv()


async def test_parked_task_shows_op_primitive_site_and_stack(diagnostics: None) -> None:
    line, ch = here(), Chan[int]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver, ch, name="rx")
        await anyio.wait_all_tasks_blocked()
        info = by_name(debug.tasks(), "rx")
        assert info.state == "parked"
        assert info.op == "chan recv"
        assert info.parked_for is not None and info.parked_for >= 0
        (prim,) = info.blocked_on
        assert prim.kind == "Chan"
        assert prim.created_at is not None
        assert prim.created_at.filename == __file__
        assert prim.created_at.lineno == line
        assert prim.created_at.function.endswith(
            "test_parked_task_shows_op_primitive_site_and_stack"
        )
        assert prim.via is None
        assert info.entry is not None and info.entry.endswith(".receiver")
        assert info.top is not None and info.top.startswith("asyncgo.")
        assert info.created_by is not None and info.created_by.startswith("task ")
        text = debug.dump()
        assert "[chan recv, " in text
        assert f"test_debug.py:{line}" in text
        assert "line, ch = here(), Chan[int]()" in text  # the source line that made it
        assert "test_debug.receiver(...)" in text
        await ch.send(1)


@pytest.mark.parametrize("with_ctx", [False, True])
async def test_a_sleep_with_a_context_shows_its_wait_on_the_done_channel(
    diagnostics: None, with_ctx: bool
) -> None:
    """Found by a review: ``sleep(s, ctx)`` (on trio, a timer of the run's heap ends its
    wait) still shows as a receive on the context's done channel; a plain sleep is a
    timer, not a park."""
    ctx, cancel = with_cancel(background())

    async def napper() -> None:
        with contextlib.suppress(Canceled):
            await (gotime.sleep(3600, ctx) if with_ctx else gotime.sleep(3600))

    async with anyio.create_task_group() as tg:
        tg.start_soon(napper, name="napper")
        await anyio.wait_all_tasks_blocked()
        info = by_name(debug.tasks(), "napper")
        if with_ctx:
            assert (info.state, info.op) == ("parked", "chan recv")
            assert "[chan recv" in debug.dump()
            cancel()
        else:
            assert (info.state, info.op) == ("waiting", None)
            tg.cancel_scope.cancel()
    cancel()


async def test_dump_groups_identical_stacks_with_counts(diagnostics: None) -> None:
    ch = Chan[int]()
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(receiver, ch, name=f"rx-{i}")
        await anyio.wait_all_tasks_blocked()
        grouped = debug.dump()
        assert "5 tasks [chan recv, " in grouped
        assert '"rx-0"' in grouped and '"rx-4"' in grouped
        assert grouped.count("test_debug.receiver(...)") == 1
        each = debug.dump(group=False)
        assert each.count("test_debug.receiver(...)") == 5
        for i in range(5):
            await ch.send(i)


async def test_labels_are_inherited_and_shown(diagnostics: None) -> None:
    ch = Chan[int]()
    seen: list[dict[str, str]] = []

    async def child() -> None:
        seen.append(dict(debug.current_labels()))
        await ch.recv()

    assert debug.current_labels() == {}
    async with anyio.create_task_group() as tg:
        with debug.labels(request="r-42", stage="fetch") as lab:
            assert dict(lab) == {"request": "r-42", "stage": "fetch"}
            with debug.labels(stage="parse", n=3):
                assert debug.current_labels() == {"request": "r-42", "stage": "parse", "n": "3"}
                tg.start_soon(child, name="inner")
            assert debug.current_labels() == {"request": "r-42", "stage": "fetch"}
            tg.start_soon(child, name="outer")
        assert debug.current_labels() == {}
        tg.start_soon(child, name="plain")
        await anyio.wait_all_tasks_blocked()
        infos = debug.tasks()
        assert by_name(infos, "inner").labels == {"request": "r-42", "stage": "parse", "n": "3"}
        assert by_name(infos, "outer").labels == {"request": "r-42", "stage": "fetch"}
        assert by_name(infos, "plain").labels == {}
        each = debug.dump(group=False)
        assert '"inner" [chan recv, ' in each
        assert "{n=3, request=r-42, stage=parse}" in each
        grouped = debug.dump()
        assert (
            "    labels: {n=3, request=r-42, stage=parse}; {request=r-42, stage=fetch}" in grouped
        )
        for i in range(3):
            await ch.send(i)
    assert {"request": "r-42", "stage": "fetch"} in seen


async def test_labels_reach_pipeline_stages() -> None:
    from asyncgo._pipeline import pipeline

    seen: set[str] = set()

    async def stage(items: Any) -> Any:
        async for x in items:
            seen.add(debug.current_labels().get("job", "-"))
            yield x * 2

    with debug.labels(job="nightly"):
        out = await (pipeline(range(5)) | stage).collect()
    assert out == [0, 2, 4, 6, 8]
    assert seen == {"nightly"}


async def test_tasks_parked_elsewhere_still_appear_with_their_stack() -> None:
    ev = anyio.Event()

    async def waiter() -> None:
        await ev.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, name="on-anyio-event")
        await anyio.wait_all_tasks_blocked()
        info = by_name(debug.tasks(), "on-anyio-event")
        assert info.state == "waiting"
        assert info.op is None and info.blocked_on == ()
        assert any(f.function.endswith(".waiter") for f in info.stack)
        assert '"on-anyio-event" [waiting]' in debug.dump(group=False)
        ev.set()


async def test_stack_follows_async_for_into_the_generators_it_steps(diagnostics: None) -> None:
    ch = Chan[int]()

    async def inner() -> AsyncIterator[int]:
        yield await ch.recv()

    async def outer() -> AsyncIterator[int]:
        async for x in inner():  # an async for inside a generator
            yield x

    async def consumer() -> None:
        async for _ in outer():  # the step object on the stack, not in a local
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer, name="iterating")
        await anyio.wait_all_tasks_blocked()
        info = by_name(debug.tasks(), "iterating")
        names = [f.function.rsplit(".", 1)[-1] for f in info.stack]
        # innermost first: the channel op, then every generator down to the task's coroutine
        i = names.index("recv")
        assert names[i : i + 4] == ["recv", "inner", "outer", "consumer"], names
        assert info.op == "chan recv"
        text = debug.dump(group=False)
        assert "<locals>.inner(...)" in text and "<locals>.outer(...)" in text
        await ch.send(1)


async def test_stack_follows_an_async_generator_being_closed(diagnostics: None) -> None:
    ch = Chan[int]()

    async def gen() -> AsyncIterator[int]:
        try:
            yield 1
        finally:
            await ch.recv()  # cleanup that waits

    async def closer() -> None:
        g = gen()
        await g.__anext__()
        await g.aclose()  # awaits an athrow step object

    async with anyio.create_task_group() as tg:
        tg.start_soon(closer, name="closing")
        await anyio.wait_all_tasks_blocked()
        info = by_name(debug.tasks(), "closing")
        names = [f.function.rsplit(".", 1)[-1] for f in info.stack]
        i = names.index("recv")
        assert names[i : i + 3] == ["recv", "gen", "closer"], names
        assert info.op == "chan recv"
        await ch.send(1)


async def test_running_task_and_num_tasks() -> None:
    me = [t for t in debug.tasks() if t.state == "running"]
    assert len(me) == 1
    assert any(f.function.endswith("test_running_task_and_num_tasks") for f in me[0].stack)
    assert not any(f.filename == debug.__file__ for f in me[0].stack)
    base = debug.num_tasks()
    assert base == len(debug.tasks()) >= 1
    ch = Chan[int]()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(receiver, ch)
        await anyio.wait_all_tasks_blocked()
        assert debug.num_tasks() == base + 3
        for i in range(3):
            await ch.send(i)
    assert debug.num_tasks() == base


async def test_select_and_mutex_show_every_primitive(diagnostics: None) -> None:
    a, b = Chan[int](), Chan[str](1)
    mu = Mutex()

    async def selector() -> None:
        await select(recv(a), recv(b), recv(None))

    async def locker() -> None:
        async with mu:
            pass

    async with anyio.create_task_group() as tg:
        await mu.lock()
        tg.start_soon(selector, name="sel")
        tg.start_soon(locker, name="lk")
        await anyio.wait_all_tasks_blocked()
        infos = debug.tasks()
        sel = by_name(infos, "sel")
        assert sel.op == "select"
        assert [p.kind for p in sel.blocked_on] == ["Chan", "Chan"]
        lk = by_name(infos, "lk")
        assert lk.op == "mutex lock"
        assert lk.blocked_on[0].kind == "Mutex"
        assert "mu = Mutex()" in str(lk.blocked_on[0])
        mu.unlock()
        await a.send(1)


@DEFAULT_STATE
async def test_off_by_default_and_sites_only_while_on() -> None:
    assert not debug.is_enabled()
    assert _diag.tracer is None
    early = Chan[int]()
    with debug.enabled():
        assert debug.is_enabled()
        with debug.enabled():  # nests
            pass
        assert debug.is_enabled()
        late = Chan[int]()
    assert _diag.tracer is None

    async def both() -> None:
        await select(recv(early), recv(late))

    with debug.enabled():
        async with anyio.create_task_group() as tg:
            tg.start_soon(both, name="both")
            await anyio.wait_all_tasks_blocked()
            prims = by_name(debug.tasks(), "both").blocked_on
            assert prims[0].created_at is None
            assert "made while diagnostics were off" in str(prims[0])
            assert prims[1].created_at is not None
            await late.send(1)
    debug.enable()
    try:
        assert debug.is_enabled()
        with debug.enabled():
            pass
        assert debug.is_enabled()
    finally:
        debug.disable()
    assert not debug.is_enabled()


def test_outside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        debug.tasks()
    with pytest.raises(RuntimeError, match="no running event loop"):
        debug.num_tasks()


# -- the HTTP endpoint ---------------------------------------------------------------


async def call_asgi(
    app: Any,
    *,
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    method: str = "GET",
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {
        "type": "http",
        "method": method,
        "path": "/",
        "query_string": query,
        "headers": headers or [],
        "client": client,
    }
    await app(scope, receive, send)
    start, body = sent
    assert start["type"] == "http.response.start"
    return start["status"], dict(start["headers"]), body["body"]


async def test_http_endpoint_off_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCGO_DEBUG_HTTP", raising=False)
    status, _, body = await call_asgi(debug.asgi_app())
    assert status == 404
    assert b"task" not in body
    status, _, _ = await call_asgi(debug.asgi_app(enabled=False))
    assert status == 404
    monkeypatch.setenv("ASYNCGO_DEBUG_HTTP", "1")
    status, headers, body = await call_asgi(debug.asgi_app())
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain")
    assert headers[b"cache-control"] == b"no-store"
    assert b"[running]" in body


async def test_http_endpoint_serves_the_dump_to_loopback_only(diagnostics: None) -> None:
    app = debug.asgi_app(enabled=True)
    ch = Chan[int]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver, ch, name="served")
        await anyio.wait_all_tasks_blocked()
        status, _, body = await call_asgi(app)
        assert status == 200 and b"tasks, " in body and b'"served"' in body
        status, _, body = await call_asgi(app, query=b"debug=2")
        assert status == 200 and b"task " in body and b'"served" [chan recv, ' in body
        status, headers, body = await call_asgi(app, query=b"format=json")
        assert status == 200 and headers[b"content-type"] == b"application/json"
        rec = next(t for t in json.loads(body) if t["name"] == "served")
        assert rec["op"] == "chan recv" and rec["blocked_on"][0]["kind"] == "Chan"
        status, _, body = await call_asgi(app, client=("::1", 1))
        assert status == 200
        status, _, body = await call_asgi(app, client=("10.1.2.3", 1))
        assert status == 403 and b"served" not in body
        status, _, _ = await call_asgi(app, client=None)
        assert status == 403
        # a local reverse proxy does not turn a remote request into a local one
        fwd = [(b"x-forwarded-for", b"203.0.113.9, 127.0.0.1")]
        status, _, _ = await call_asgi(app, headers=fwd)
        assert status == 403
        status, _, _ = await call_asgi(app, headers=[(b"forwarded", b'for="[2001:db8::1]"')])
        assert status == 403
        status, _, _ = await call_asgi(app, headers=[(b"x-forwarded-for", b"127.0.0.1")])
        assert status == 200
        status, _, _ = await call_asgi(app, method="POST")
        assert status == 405
        status, _, body = await call_asgi(app, method="HEAD")
        assert status == 200 and body == b""
        wide = debug.asgi_app(enabled=True, allow=["10.0.0.0/8"])
        status, _, _ = await call_asgi(wide, client=("10.1.2.3", 1))
        assert status == 200
        await ch.send(1)


async def test_http_endpoint_token() -> None:
    app = debug.asgi_app(enabled=True, token="s3cret")
    status, _, _ = await call_asgi(app)
    assert status == 401
    status, _, _ = await call_asgi(app, headers=[(b"authorization", b"Bearer nope")])
    assert status == 401
    status, _, _ = await call_asgi(app, headers=[(b"authorization", b"Bearer s3cret")])
    assert status == 200
    with pytest.raises(ValueError, match="empty token"):
        debug.asgi_app(enabled=True, token="")


async def test_asgi_lifespan_and_websocket() -> None:
    app = debug.asgi_app(enabled=True)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(msg: MutableMapping[str, Any]) -> None:
        sent.append(dict(msg))

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    sent.clear()
    await app({"type": "websocket"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_aiohttp_handler(anyio_backend_name: str) -> None:
    pytest.importorskip("aiohttp")
    if anyio_backend_name != "asyncio":
        pytest.skip("aiohttp runs on asyncio")
    from aiohttp import web  # type: ignore[import-not-found, unused-ignore]
    from aiohttp.test_utils import (  # type: ignore[import-not-found, unused-ignore]
        TestClient,
        TestServer,
    )

    app = web.Application()
    app.router.add_get("/debug/tasks", debug.aiohttp_handler(enabled=True))
    app.router.add_get("/off", debug.aiohttp_handler(enabled=False))
    async with TestClient(TestServer(app)) as client:  # connects from 127.0.0.1
        resp = await client.get("/debug/tasks?debug=2")
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert "[running]" in await resp.text()
        resp = await client.get("/debug/tasks?format=json")
        assert resp.status == 200 and isinstance(await resp.json(), list)
        resp = await client.get("/debug/tasks", headers={"X-Forwarded-For": "203.0.113.9"})
        assert resp.status == 403
        resp = await client.get("/off")
        assert resp.status == 404


# -- the examples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "backend", "expect"),
    [
        (
            "diagnose_deadlock.py",
            "asyncio",
            ["== lock_inversion: asyncgo.Deadlock", "[mutex lock, "],
        ),
        (
            "diagnose_deadlock.py",
            "trio",
            ["== forgotten_receiver: asyncgo.Deadlock", "[chan send, "],
        ),
        (
            "diagnose_leak.py",
            "uvloop",
            ['"worker-1" [chan recv, ', "{request=2}", "(fixed): no leak"],
        ),
    ],
)
def test_examples_run(script: str, backend: str, expect: list[str]) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / script), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in expect:
        assert text in proc.stdout


async def test_group_tasks_are_named_after_their_function_on_every_backend() -> None:
    """asyncio names an unnamed task ``Task-N``; trio after its function. A Group task
    shows as trio names it on every backend (plain asyncio tasks keep their name)."""
    from asyncgo import Group

    ch = Chan[int]()

    async def resize(c: Chan[int]) -> None:
        await c.recv_ok()

    with debug.enabled():
        async with Group() as g:
            g.go_nowait(resize, ch)
            await anyio.wait_all_tasks_blocked()
            ops = {t.name: t.op for t in debug.tasks()}
            ch.close()
    assert ops.get(f"{resize.__module__}.{resize.__qualname__}") == "chan recv"


@DEFAULT_STATE
async def test_a_task_parked_before_diagnostics_were_on_shows_what_it_is_parked_on() -> None:
    """Turned on later, diagnostics still see a task parked untraced (a fixture's worker):
    its operation and primitive, not how long (nothing recorded when it parked)."""
    assert not debug.is_enabled()
    jobs = Chan[int]()
    mu = Mutex()
    await mu.lock()

    async def worker() -> None:
        async for _ in jobs:
            pass  # pragma: no cover - nothing is sent

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, name="early-worker")
        tg.start_soon(mu.lock, name="early-locker")
        await anyio.wait_all_tasks_blocked()
        assert by_name(debug.tasks(), "early-worker").state == "waiting"  # off: unknown
        with debug.enabled():
            infos = debug.tasks()
            text = debug.dump(group=False)
        w, lk = by_name(infos, "early-worker"), by_name(infos, "early-locker")
        assert (w.state, w.op, w.parked_for) == ("parked", "chan recv", None)
        assert w.blocked_on[0].kind == "Chan" and "open" in w.blocked_on[0].description
        assert (lk.state, lk.op) == ("parked", "mutex lock")
        assert f'task {w.id} "early-worker" [chan recv]:' in text
        jobs.close()
        mu.unlock()


async def test_what_asyncgo_makes_in_its_own_tasks_names_no_runner_frame() -> None:
    """A primitive made inside a task asyncgo runs has no line of the user's to show.

    A publisher started as a task (``tg.start_soon(bus.publish, 2)``) makes its lock
    lazily, with only asyncgo's and anyio's frames on the stack: the dump said it was
    made at anyio's task runner (``retval = await self._coro``). It now names the
    asyncgo function and says so, and does not claim diagnostics were off.
    """
    from asyncgo import Broadcast

    with debug.enabled():
        bus = Broadcast[int]()
        async with anyio.create_task_group() as tg:

            async def sub() -> None:
                async with bus.subscribe(buffer=0):
                    await anyio.sleep_forever()

            tg.start_soon(sub)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(bus.publish, 1, name="pub1")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(bus.publish, 2, name="pub2")
            await anyio.wait_all_tasks_blocked()
            [t] = [t for t in debug.tasks() if t.name == "pub2"]
            tg.cancel_scope.cancel()
    [lock] = t.blocked_on
    assert lock.created_at is None
    line = lock.describe(state=False)
    assert "asyncgo._pubsub.Broadcast.publish" in line and "task asyncgo runs" in line, line
    assert "anyio" not in line and "diagnostics were off" not in line, line
