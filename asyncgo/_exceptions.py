"""Every exception asyncgo raises.

The hierarchy::

    Exception
    ├── ChanClosed            send on / close of a closed channel; recv on a closed, drained one
    ├── WouldBlock            a *_nowait() call that would have had to wait
    ├── Canceled              ctx.err() after cancel()                    (Go: context.Canceled)
    ├── Deadlock              every task of a detect_deadlocks() scope is asleep
    └── TimeoutError
        └── DeadlineExceeded  ctx.err() after the deadline passed (Go: context.DeadlineExceeded)

The backends' own cancellation exceptions (``asyncio.CancelledError``,
``trio.Cancelled``) are never raised, wrapped or swallowed by asyncgo: they are
how anyio cancels a task, while `Canceled` is a value a context reports.
"""

from __future__ import annotations

import inspect
import pickle
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any, NoReturn

from ._backend import AsyncioCancelled, retire_last_process_worker

__all__ = ["Canceled", "ChanClosed", "DeadlineExceeded", "Deadlock", "WouldBlock"]


class ChanClosed(Exception):
    """The channel is closed.

    Raised by a send on a closed channel (``"send on closed channel"``), by a
    second ``close()`` (``"close of closed channel"``), and by ``recv()`` once the
    channel is closed *and* drained (``"recv on closed channel"``).
    Go: the ``panic`` of a send on a closed channel; ``v, ok := <-ch`` with ``ok == false``.

    Example:
        ```python
        ch = Chan[int](1)
        await ch.send(1)
        ch.close()
        assert await ch.recv() == 1          # a closed channel drains first
        try:
            await ch.recv()
        except ChanClosed as e:
            assert str(e) == "recv on closed channel"
        assert await ch.recv_ok() == (None, False)   # Go: v, ok := <-ch
        ```
    """


class WouldBlock(Exception):
    """A ``*_nowait()`` operation could not complete without waiting.

    Example:
        ```python
        ch = Chan[str](1)
        ch.send_nowait("a")
        try:
            ch.send_nowait("b")              # the buffer is full
        except WouldBlock:
            pass
        assert ch.recv_nowait() == "a"
        ```
    """


class Canceled(Exception):
    """The context was cancelled. Go: ``context.Canceled``.

    A value that `Context.err` reports, not the exception that cancels a task:
    asyncgo raises it where Go code would return ``ctx.Err()`` (``rate.Limiter.wait``,
    ``Semaphore.acquire``, ``time.sleep(s, ctx)``, a pipeline run under a ctx, ...).

    Example:
        ```python
        c, cancel = with_cancel(background())
        cancel()
        assert isinstance(c.err(), Canceled)
        try:
            await gotime.sleep(10, ctx=c)
        except Canceled as e:
            assert str(e) == "context canceled"
        ```
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("context canceled",)))


class DeadlineExceeded(TimeoutError):
    """The context's deadline passed. Go: ``context.DeadlineExceeded``.

    A `TimeoutError`, like the exception of ``anyio.fail_after``.

    Example:
        ```python
        c, cancel = with_timeout(background(), 0.01)
        try:
            await c.wait()                   # returns once the context is done
            assert isinstance(c.err(), DeadlineExceeded)
            assert isinstance(c.err(), TimeoutError)
        finally:
            cancel()
        ```
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("context deadline exceeded",)))


class Deadlock(Exception):
    """Every task of a deadlock-detection scope is asleep on asyncgo primitives.

    Go: ``fatal error: all goroutines are asleep - deadlock!``. The message
    lists who waits on what. Raised where the scope's own task is parked, when
    it waits on an asyncgo primitive itself (so ``try``/``pytest.raises``
    around that ``await`` catches it); else by the scope's block, whose body is
    cancelled (`asyncgo.debug.detect_deadlocks`).

    Example:
        ```python
        ch = Chan[int]()
        try:
            async with debug.detect_deadlocks():
                await ch.recv()              # nobody will ever send
        except Deadlock as e:
            assert "chan recv" in str(e)
        ```
    """


# -- misuse messages shared by the APIs that take an async function ----------------


def not_a_function(fn: object, call: str, advice: str) -> TypeError:
    """The error for a *fn* that cannot be called, e.g. a coroutine object (``f()`` for ``f``).

    *call* names the API (``"sync: Once.do"``); *advice* is shown when *fn* is an
    awaitable, which is then closed: no "never awaited" warning on top of the error.
    """
    hint = ""
    if hasattr(fn, "__await__"):
        hint = f": {advice}"
        close = getattr(fn, "close", None)
        if close is not None:
            close()
    return TypeError(f"{call}() takes an async function, not {type(fn).__name__}{hint}")


def not_awaitable(fn: object, result: object, call: str) -> TypeError:
    """The error for a *fn* that returned something not awaitable: a sync function."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return TypeError(
        f"{call}() takes an async function; {name} returned "
        f"{type(result).__name__}, not an awaitable (is it a sync function?)"
    )


def is_async(fn: object) -> bool:
    """True for a coroutine function, a partial of one, or an object with an async ``__call__``."""
    while isinstance(fn, partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - an async __call__ method
    return call is not None and inspect.iscoroutinefunction(call)


def check_sync_callable(fn: object, what: str, expected: str) -> None:
    """Reject a callback that is not a plain function: a non-callable, an async one.

    *what* names the parameter (``"CircuitBreaker(on_state_change=...)"``),
    *expected* what it takes (``"a function fn(old, new)"``). An async function
    would only make coroutines that nothing awaits: its work silently never done.
    """
    if not callable(fn):
        raise TypeError(f"{what} takes {expected}, not {type(fn).__name__}")
    if is_async(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} takes {expected}, called synchronously: an async function's "
            "coroutine would never be awaited"
        )


def call_sync(fn: Callable[..., Any], who: str, advice: str, *args: object) -> Any:
    """``fn(*args)`` in an executor's thread or process: a sync result, never an awaitable.

    An awaitable there (``lambda x: fetch(x)`` with an async ``fetch``) would be
    passed on as a result, or fail in the executor's own code, differently on each
    backend: refused here instead, the same way everywhere (and in a worker
    process, whose result must pickle). *who* names the API
    (``"stages.map(executor='thread')"``), *advice* what to do instead.
    """
    try:
        result = fn(*args)
    except (AsyncioCancelled, GeneratorExit) as exc:
        # Not a cancellation of ours, nor a coroutine being closed -- nothing cancels a
        # thread or a worker process -- but back on the event loop it would pass for
        # one and end the caller's block quietly (a pipeline's output would look
        # complete).
        raise RuntimeError(
            f"{who}: {_fn_name(fn)} raised {type(exc).__name__} in a worker thread or "
            "process, where nothing cancels it: reported as the job's error, not as a "
            "cancellation"
        ) from exc
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # no "never awaited" warning
            what = "a coroutine"
        else:
            what = f"an awaitable ({type(result).__name__})"
        name = getattr(fn, "__qualname__", None)
        raise TypeError(
            f"{who} runs sync functions; "
            f"{name if isinstance(name, str) else repr(fn)} returned {what}: {advice}"
        )
    return result


def _fn_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


def call_in_process(
    fn: Callable[..., Any], who: str, advice: str, *args: object
) -> tuple[bool, Any]:
    """`call_sync` in a worker process: ``(True, result)``, or ``(False, pickled
    exception)``; it never raises.

    An exception is pickled here, in the worker, and rebuilt once to be sure it
    can be: one that cannot reach the parent process becomes an error that says so
    (anyio's worker would send the bare pickling error, or an exception the parent
    then fails to rebuild, with a message about its ``__init__``). A ``SystemExit``
    from the job reaches the parent without ending the worker process under anyio's
    feet (it kept the dying process for the next job). The result is returned as
    it is: pickling it twice would cost every job a copy.
    """
    try:
        return True, call_sync(fn, who, advice, *args)
    except BaseException as exc:
        try:
            data = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)  # an exception that pickles may still fail to rebuild
        except Exception as why:
            err = RuntimeError(
                f"{who}: {_fn_name(fn)} raised {type(exc).__name__}: {exc}, which cannot "
                f"be sent back from the worker process ({type(why).__name__}: {why}); "
                "raise an exception that pickles (give its class a __reduce__, or pass "
                "every __init__ argument on to Exception.__init__)"
            )
            data = pickle.dumps(err, pickle.HIGHEST_PROTOCOL)
        return False, data


async def run_in_process(
    run_sync: Callable[..., Awaitable[tuple[bool, Any]]],
    fn: Callable[..., Any],
    who: str,
    advice: str,
    *args: object,
) -> Any:
    """``fn(*args)`` in a worker process through *run_sync* (``anyio.to_process.run_sync``
    with its options), with `call_in_process`'s errors: its result, or what it raised."""
    # anyio's worker imports the main module as __mp_main__, so a class of the
    # main script pickles there under that name; multiprocessing aliases it in the
    # parent (at its import), which anyio does not import.
    main = sys.modules.get("__main__")
    if main is not None:
        sys.modules.setdefault("__mp_main__", main)
    try:
        ok, outcome = await run_sync(call_in_process, fn, who, advice, *args)
    except Exception as exc:
        # Not the job's own error (that comes back as data; call_in_process never
        # raises): the call could not be pickled here, or not loaded in the worker,
        # or its result not pickled there or not loaded here. Which one, found out
        # now that it failed.
        if type(exc).__name__ == "BrokenWorkerProcess" or isinstance(exc, OSError | RuntimeError):
            raise  # (the worker could not start or broke; anyio's own errors)
        try:
            call = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        except Exception:
            raise TypeError(
                f"{who}: the job {_fn_name(fn)}(...) cannot be sent to a worker process "
                f"({type(exc).__name__}: {exc}); a process job needs a module-level "
                "function and arguments that pickle"
            ) from exc
        # The worker was used. One that failed to load the call may have stopped
        # halfway through its input, and anyio would give it the next job: retire it.
        await retire_last_process_worker()
        try:
            pickle.loads(call)
        except Exception:
            raise TypeError(
                f"{who}: the job {_fn_name(fn)}(...) pickles but cannot be rebuilt "
                f"({type(exc).__name__}: {exc}); a process job needs a function and "
                "arguments that the worker process can rebuild"
            ) from exc
        if isinstance(exc, (TypeError, pickle.PicklingError)) and "pickle" in str(exc):
            raise TypeError(
                f"{who}: {_fn_name(fn)} ran in a worker process, but what it returned "
                f"cannot be sent back ({type(exc).__name__}: {exc}); return a value "
                "that pickles"
            ) from exc
        raise TypeError(
            f"{who}: the job {_fn_name(fn)}(...) could not be moved to or from the worker "
            f"process ({type(exc).__name__}: {exc}); a process job needs a function, "
            "arguments and a result that the worker and this process can both import"
        ) from exc
    if ok:
        return outcome
    try:
        error = pickle.loads(outcome)
    except Exception as exc:
        raise RuntimeError(
            f"{who}: the exception raised by {_fn_name(fn)} came back from the worker "
            f"process but cannot be rebuilt here ({type(exc).__name__}: {exc})"
        ) from exc
    raise error


def stray_cancellation(what: str, exc: BaseException, instead: str) -> RuntimeError:
    """The error for *exc*, a cancellation that *what* raised but nothing of ours caused.

    (It awaited something cancelled elsewhere: on asyncio a future, or another
    task.) Raised into a task group, anyio would take it for a failed task and
    cancel the whole block; it is an error of that call, reported as this
    `RuntimeError`, chained from it. *instead* says who gets it.
    """
    err = RuntimeError(
        f"{what} raised {type(exc).__name__}, a cancellation that no cancel scope of "
        "it caused (it awaited something cancelled elsewhere, e.g. a future or another "
        f"task): {instead}"
    )
    err.__cause__ = exc
    return err


def to_seconds(x: float) -> float:
    """*x*, a checked number of seconds (a real number: an int, a float, a Fraction),
    as a float: an int beyond a float's range is as good as infinite (`asyncgo.time`
    takes it so too)."""
    try:
        return float(x)
    except OverflowError:
        return float("inf") if x > 0 else float("-inf")


def raise_shared(err: BaseException, tb: TracebackType | None) -> NoReturn:
    """Raise *err*, an exception kept and raised again (a singleflight call's, a task
    handle's, `once_value`'s), each time with its own traceback *tb*: re-raising it
    as is would pile up every raiser's frames. Its ``__context__`` stays its own:
    raised inside a caller's ``except``, Python would chain it to what that caller
    was handling -- and keep that caller's frames alive.
    """
    context, suppress = err.__context__, err.__suppress_context__
    try:
        raise err.with_traceback(tb)
    finally:
        err.__context__, err.__suppress_context__ = context, suppress
        del err, context
