"""`Once`, `once_func`, `once_value`: run an async function once, Go's ``sync.Once`` family.

What counts as "done" (docs/sync.md, "Once and errors"):

* the function returned: done;
* it raised an `Exception`: done, as Go counts a panicking call as done --
  unless ``retry_on_error=True``, the variant Python code usually wants for lazy
  initialisation, where the next caller (possibly one already waiting) runs it
  again;
* it was cancelled (or raised another `BaseException`): not done. Go has no
  such case; the call did not finish, so the next caller in line runs it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from inspect import isawaitable
from typing import TYPE_CHECKING, Generic, TypeVar, final, overload

from asyncgo._backend import checkpoint, must_checkpoint
from asyncgo._exceptions import not_a_function, raise_shared

from ._mutex import Mutex

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Once", "once_func", "once_value"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


@final
class Once:
    """Run an async function exactly once, however many tasks ask.

    ``await once.do(fn)`` calls ``fn()`` if no call has completed yet;
    concurrent callers wait for the running call to finish, then return
    without calling ``fn``. Go: ``sync.Once``

    If ``fn`` raises an `Exception`, the exception reaches the caller that ran
    it, and (Go's rule) the Once is done: callers waiting for it and later
    callers return without calling ``fn``. With ``retry_on_error=True`` the
    Once stays not done instead and the next caller -- the longest-waiting
    one, if any -- calls ``fn`` again. If the caller running ``fn`` is
    cancelled, the call did not complete: the Once stays not done and the next
    caller runs ``fn`` (whatever ``retry_on_error`` says).

    As in Go, calling ``once.do`` from inside ``fn`` on the same Once waits
    forever.

    Cancellation: a caller cancelled while waiting for the running call leaves
    no trace. Checkpoint: `do` is always a cancel point.

    Example:
        ```python
        once = Once()
        connections: list[str] = []

        async def connect() -> None:
            await anyio.sleep(0.001)         # stands for opening a connection
            connections.append("db")

        async def get_client() -> str:
            await once.do(connect)           # Go: once.Do(connect)
            return connections[0]            # every caller waits for the one connect()

        async with Group() as g:
            clients = [await g.go(get_client) for _ in range(10)]
        assert connections == ["db"]
        assert {c.result() for c in clients} == {"db"}
        ```
    """

    __slots__ = ("__weakref__", "_done", "_mu", "_retry", "_rt")

    def __init__(self, *, retry_on_error: bool = False) -> None:
        """Make a Once; *retry_on_error* makes a raising call not count as done.

        Raises:
            TypeError: *retry_on_error* is not a bool.
        """
        if type(retry_on_error) is not bool:
            raise TypeError(
                f"Once(retry_on_error=...) takes a bool, not {type(retry_on_error).__name__}"
            )
        self._done = False
        self._retry = retry_on_error
        self._mu = Mutex()
        self._rt: object = None

    def __repr__(self) -> str:
        return f"<Once done={self._done} at {id(self):#x}>"

    async def do(self, fn: Callable[[], Awaitable[object] | object]) -> None:
        """Call ``fn()`` unless a call of this Once has completed; wait for a running one.

        ``fn`` is an async function (its result is awaited) or, as in Go, a plain
        one (called on the event loop: keep it short).
        Go: ``once.Do(f)``

        Raises:
            Exception: Whatever ``fn`` raised, in the caller that ran it.
            TypeError: ``fn`` cannot be called (e.g. ``once.do(f())`` for
                ``once.do(f)``); the Once stays not done.
        """
        if not callable(fn):  # (also once done: f() would be a coroutine never awaited)
            raise not_a_function(
                fn, "sync: Once.do", "pass the async function itself, once.do(f), not once.do(f())"
            )
        if self._done:
            if must_checkpoint(self):
                await checkpoint()
            return
        await self._do_slow(fn)  # locking is the cancel point

    async def _do_slow(self, fn: Callable[[], Awaitable[object] | object]) -> None:
        mu = self._mu
        await mu.lock()
        try:
            if self._done:
                return
            try:
                r = fn()
                if isawaitable(r):  # (else a plain function: it has run)
                    await r
            except Exception:
                if not self._retry:
                    self._done = True
                raise
            self._done = True
        finally:
            mu.unlock()


class _Result(Generic[T]):
    __slots__ = ("exc", "fn", "tb", "value")

    def __init__(self, fn: Callable[[], Awaitable[T]] | Callable[[], T]) -> None:
        # The function, until a call of it is done: then dropped, so that it (and
        # what its closure holds) can be freed -- Go's OnceFunc/OnceValue do the same.
        self.fn: Callable[[], Awaitable[T]] | Callable[[], T] | None = fn
        self.value: T | None = None
        self.exc: BaseException | None = None
        self.tb: TracebackType | None = None


def _wraps(fn: Callable[..., object]) -> Callable[[F], F]:
    """`functools.wraps` without ``__wrapped__``, which would keep *fn* alive for good."""

    def decorate(wrapper: F) -> F:
        functools.update_wrapper(wrapper, fn)
        del wrapper.__wrapped__  # type: ignore[attr-defined]
        return wrapper

    return decorate


@overload
def once_value(
    fn: Callable[[], Awaitable[T]], *, retry_on_error: bool = False
) -> Callable[[], Coroutine[object, object, T]]: ...
@overload
def once_value(
    fn: Callable[[], T], *, retry_on_error: bool = False
) -> Callable[[], Coroutine[object, object, T]]: ...
def once_value(
    fn: Callable[[], Awaitable[T]] | Callable[[], T], *, retry_on_error: bool = False
) -> Callable[[], Coroutine[object, object, T]]:
    """Return an async function that calls ``fn()`` once and returns its value ever after.

    ``fn`` is an async function (its result is awaited) or, as in Go, a plain one.

    Concurrent callers wait for the first call. If ``fn`` raises an
    `Exception`, every call -- now and later -- raises that same exception (Go's
    rule: ``OnceValue`` panics with the same value on every call); with
    ``retry_on_error=True`` the error goes to the caller whose call failed and
    the next call runs ``fn`` again. A cancelled first call is not an outcome:
    the next caller runs ``fn``. Once a call is done, ``fn`` is no longer
    referenced, so it and what its closure holds can be freed (as in Go).
    Go: ``sync.OnceValue(f)``

    Example:
        ```python
        reads: list[str] = []

        async def read_config_file() -> dict[str, int]:
            reads.append("config.toml")
            return {"workers": 4}

        load_config = once_value(read_config_file)  # Go: sync.OnceValue(f)
        cfg = await load_config()
        assert cfg == {"workers": 4}
        assert await load_config() is cfg    # the same value, read once
        assert reads == ["config.toml"]
        ```

    Raises:
        TypeError: *fn* cannot be called (e.g. ``once_value(f())`` for
            ``once_value(f)``).
    """
    return _once_value(fn, retry_on_error, "once_value")


def _once_value(
    fn: Callable[[], Awaitable[T]] | Callable[[], T], retry_on_error: bool, what: str
) -> Callable[[], Coroutine[object, object, T]]:
    if not callable(fn):
        raise not_a_function(
            fn, f"sync: {what}", f"pass the async function itself, {what}(f), not {what}(f())"
        )
    if type(retry_on_error) is not bool:
        raise TypeError(
            f"{what}(retry_on_error=...) takes a bool, not {type(retry_on_error).__name__}"
        )
    once = Once(retry_on_error=retry_on_error)
    res: _Result[T] = _Result(fn)

    async def run() -> None:
        f = res.fn
        assert f is not None  # dropped only once done, and then run() is not called
        try:
            r = f()
            res.value = await r if isawaitable(r) else r  # (a plain function: its value)
        except Exception as exc:
            if not retry_on_error:
                res.exc = exc
                res.tb = exc.__traceback__
                res.fn = None
            raise
        res.fn = None

    @_wraps(fn)
    async def call() -> T:
        if not once._done:
            await once.do(run)
        elif must_checkpoint(once):
            await checkpoint()
        if res.exc is not None:
            # The same exception every time, with the traceback of the failed
            # call (re-raising it as is would grow its traceback on every call),
            # and its own __context__ (not what this caller was handling).
            raise_shared(res.exc, res.tb)
        return res.value  # type: ignore[return-value]

    return call


def once_func(
    fn: Callable[[], Awaitable[object] | object], *, retry_on_error: bool = False
) -> Callable[[], Coroutine[object, object, None]]:
    """Return an async function that calls ``fn()`` only the first time it is called.

    ``fn`` is an async function (its result is awaited) or, as in Go, a plain one.

    Concurrent callers wait for the first call. If ``fn`` raises an
    `Exception`, every call -- now and later -- raises that same exception (Go's
    rule for ``OnceFunc``); with ``retry_on_error=True`` the next call runs
    ``fn`` again instead. Go: ``sync.OnceFunc(f)``

    Example:
        ```python
        tables: list[str] = []

        async def create_tables() -> None:
            tables.append("users")

        init = once_func(create_tables)      # Go: sync.OnceFunc(f)
        await init()                         # creates the tables
        await init()                         # does nothing
        assert tables == ["users"]
        ```

    Raises:
        TypeError: *fn* cannot be called (e.g. ``once_func(f())`` for
            ``once_func(f)``).
    """
    value = _once_value(fn, retry_on_error, "once_func")

    @_wraps(fn)
    async def call() -> None:
        await value()

    return call
