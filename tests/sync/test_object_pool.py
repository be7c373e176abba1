"""sync.Pool (issue #4): a deterministic sync.Pool."""

from __future__ import annotations

import threading

import anyio
import pytest

from asyncgo.sync import Pool

pytestmark = pytest.mark.anyio


def test_get_calls_the_factory_when_empty() -> None:
    made = 0

    def new() -> bytearray:
        nonlocal made
        made += 1
        return bytearray()

    pool = Pool(new)
    a, b = pool.get(), pool.get()
    assert a is not b
    assert made == 2
    assert len(pool) == 0


def test_get_returns_the_most_recently_put_object() -> None:
    pool: Pool[list[int]] = Pool(list)
    a, b = [1], [2]
    pool.put(a)
    pool.put(b)
    assert len(pool) == 2
    assert pool.get() is b
    assert pool.get() is a
    assert pool.get() == []  # fresh from the factory


def test_max_idle_drops_extra_objects() -> None:
    pool: Pool[object] = Pool(object, max_idle=2)
    objs = [object() for _ in range(3)]
    for o in objs:
        pool.put(o)
    assert len(pool) == 2
    assert pool.get() is objs[1]
    assert pool.get() is objs[0]


def test_max_idle_zero_keeps_nothing() -> None:
    pool: Pool[object] = Pool(object, max_idle=0)
    pool.put(object())
    assert len(pool) == 0


def test_clear_drops_idle_objects() -> None:
    pool: Pool[object] = Pool(object)
    pool.put(object())
    pool.clear()
    assert len(pool) == 0
    assert "idle=0" in repr(pool)


def test_no_factory_is_go_zero_pool() -> None:
    # Go: var p sync.Pool; p.Get() is nil until something is put.
    pool: Pool[bytearray | None] = Pool()
    assert pool.get() is None
    buf = bytearray(b"x")
    pool.put(buf)
    assert pool.get() is buf
    assert pool.get() is None
    assert len(pool) == 0


def test_put_none_is_ignored_like_go_put_nil() -> None:
    # Go: func (p *Pool) Put(x any) { if x == nil { return } ... }
    zero: Pool[bytearray | None] = Pool()
    zero.put(None)
    assert len(zero) == 0
    assert zero.get() is None
    made: Pool[list[int] | None] = Pool(list)
    made.put(None)
    assert len(made) == 0
    assert made.get() == []  # the factory's, not the None


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="factory"):
        Pool(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="negative"):
        Pool(object, max_idle=-1)


def test_usable_from_threads() -> None:
    pool: Pool[bytearray] = Pool(bytearray)

    def work() -> None:
        for _ in range(1000):
            buf = pool.get()
            buf.clear()
            pool.put(buf)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(pool) <= 4


async def test_shared_by_tasks_never_hands_out_one_object_twice() -> None:
    pool: Pool[list[int]] = Pool(list)
    in_use: set[int] = set()

    async def worker() -> None:
        for _ in range(50):
            obj = pool.get()
            assert id(obj) not in in_use
            in_use.add(id(obj))
            await anyio.lowlevel.checkpoint()
            in_use.discard(id(obj))
            pool.put(obj)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(worker)
    assert 1 <= len(pool) <= 8


def test_an_async_factory_is_refused() -> None:
    # get() is sync: Pool(connect) handed out coroutines, never awaited.
    import functools

    async def connect(host: str = "db") -> object:
        return object()

    with pytest.raises(TypeError, match=r"Pool\(new\) takes a sync factory; .*connect is async"):
        Pool(connect)

    class Factory:  # async, though inspect cannot tell: caught at get()
        def __call__(self) -> object:
            return connect()

    pool: Pool[object] = Pool(Factory())
    with pytest.raises(TypeError, match="takes a sync factory"):
        pool.get()
    with pytest.raises(TypeError, match="takes a sync factory"):
        Pool(functools.partial(connect, "db2"))
