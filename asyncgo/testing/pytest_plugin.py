"""The asyncgo pytest plugin: deadlock detection, leak checks and a per-test Context.

Registered through the ``pytest11`` entry point ``asyncgo`` (disable it with
``-p no:asyncgo``). It wraps every ``async def`` test -- whichever plugin runs
it: pytest-asyncio (strict or auto mode) or anyio's (asyncio, uvloop, trio);
a hypothesis test (``@given`` on an ``async def``) example by example -- in:

* `asyncgo.debug.detect_deadlocks()`, on by default: a test whose tasks all
  jam on asyncgo primitives fails at once with `asyncgo.Deadlock` and who waits
  on what, instead of hanging until a timeout. Off: ini ``asyncgo_detect_deadlocks
  = false``, ``--asyncgo-no-deadlocks``, or ``@pytest.mark.asyncgo_detect_deadlocks(False)``.
  Diagnostics are on for the fixtures' setup and teardown of such a test too, so
  the tasks and primitives fixtures make are seen; a jam in a fixture's own setup
  or teardown is not detected (the scope wraps the test function).
* `asyncgo.testing.no_leaks()`, opt-in: per test with the ``asyncgo_no_leaks``
  fixture or ``@pytest.mark.asyncgo_no_leaks(grace=..., ignore_names=[...], ...)``;
  for the whole session with ``--asyncgo-leaks`` or ini ``asyncgo_check_leaks = true``
  (then ``@pytest.mark.asyncgo_no_leaks(False)`` exempts a test). Grace default:
  ini ``asyncgo_leak_grace`` (1 s).
* ``asyncgo_ctx``: a fixture giving the test an `asyncgo.Context`, cancelled when
  the test ends, done after ini ``asyncgo_context_timeout`` seconds (or the
  ``@pytest.mark.asyncgo_context(timeout=...)`` marker's) when one is set.
  The Context is made on the test's own event loop as the test starts, so it
  is passed to the test function itself, not to other fixtures (a fixture gets a
  placeholder whose use fails saying so; a sync test asking for it fails at setup).

Sync tests are left alone: the fixtures, markers and switches above apply to
``async def`` tests only. Failures carry the task dump in their message.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Generator
from contextlib import AsyncExitStack
from typing import Any, TypeGuard

import pytest

from asyncgo import Deadlock, debug
from asyncgo.testing._leaks import no_leaks

__all__ = [
    "asyncgo_ctx",
    "asyncgo_detect_deadlocks",
    "asyncgo_no_leaks",
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_call",
    "pytest_runtest_protocol",
]

_CTX = "asyncgo_ctx"
_LEAKS_KEY = pytest.StashKey[no_leaks]()
_DEADLOCKS_KEY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncgo", "asyncgo diagnostics")
    group.addoption(
        "--asyncgo-leaks",
        action="store_true",
        default=False,
        help="check every async test for tasks it leaves behind (asyncgo.testing.no_leaks)",
    )
    group.addoption(
        "--asyncgo-no-deadlocks",
        action="store_true",
        default=False,
        help="do not run async tests under asyncgo.debug.detect_deadlocks()",
    )
    parser.addini(
        "asyncgo_detect_deadlocks",
        type="bool",
        default=True,
        help="run every async test under asyncgo.debug.detect_deadlocks() (default: true)",
    )
    parser.addini(
        "asyncgo_check_leaks",
        type="bool",
        default=False,
        help="check every async test for leaked tasks (default: false)",
    )
    parser.addini(
        "asyncgo_leak_grace",
        default="1.0",
        help="seconds leaked tasks get to end before a leak check fails (default: 1.0)",
    )
    parser.addini(
        "asyncgo_context_timeout",
        default="",
        help="deadline in seconds of the asyncgo_ctx fixture's Context (default: none)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "asyncgo_no_leaks(enabled=True, *, grace=..., ignore_names=(), ignore_top_function=(), "
        "ignore_any_function=(), ignore=None): fail the async test if tasks it started "
        "outlive it (asyncgo.testing.no_leaks); asyncgo_no_leaks(False) exempts it from "
        "--asyncgo-leaks",
    )
    config.addinivalue_line(
        "markers",
        "asyncgo_detect_deadlocks(enabled=True): run the async test under "
        "asyncgo.debug.detect_deadlocks() (on by default); (False) turns it off",
    )
    config.addinivalue_line(
        "markers",
        "asyncgo_context(timeout=None): the deadline of the asyncgo_ctx fixture's Context",
    )
    # A bad value stops the session here, once, not every test that reads it.
    _float_ini(config, "asyncgo_leak_grace")
    _float_ini(config, "asyncgo_context_timeout")


def _float_ini(config: pytest.Config, name: str) -> float | None:
    raw = str(config.getini(name)).strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise pytest.UsageError(f"{name} must be a number of seconds, not {raw!r}") from None


def _leak_check(item: pytest.Item) -> no_leaks | None:
    """The item's leak check (made on first need), or None when it has none."""
    check = item.stash.get(_LEAKS_KEY, None)
    if check is not None:
        return check
    marker = item.get_closest_marker("asyncgo_no_leaks")
    config = item.config
    on = bool(config.getoption("asyncgo_leaks")) or bool(config.getini("asyncgo_check_leaks"))
    options: dict[str, Any] = {}
    if marker is not None:
        on = bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
        options = {k: v for k, v in marker.kwargs.items() if k != "enabled"}
    if not on and _LEAKS_KEY not in item.stash:
        return None
    options.setdefault("grace", _float_ini(config, "asyncgo_leak_grace") or 0.0)
    check = no_leaks(**options)
    item.stash[_LEAKS_KEY] = check
    return check


def _deadlocks_on(item: pytest.Item) -> bool:
    if item.stash.get(_DEADLOCKS_KEY, False):
        return True
    marker = item.get_closest_marker("asyncgo_detect_deadlocks")
    if marker is not None:
        return bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
    config = item.config
    return not config.getoption("asyncgo_no_deadlocks") and bool(
        config.getini("asyncgo_detect_deadlocks")
    )


_CTX_ONLY = (
    "asyncgo_ctx is given only to async test functions (the Context is made on the "
    "test's event loop as the test function starts), not to sync tests or other fixtures"
)


class _CtxPlaceholder:
    """What the ``asyncgo_ctx`` fixture returns until the test starts on its loop.

    Only an async test function gets the Context in its place: a fixture that asks
    for ``asyncgo_ctx`` keeps this, and using it says so.
    """

    def __repr__(self) -> str:
        return "<asyncgo_ctx: the Context is made when the test function starts>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # protocols probing: plain
            raise AttributeError(name)
        raise AttributeError(
            f"{_CTX_ONLY}: a fixture that asked for it got this placeholder, "
            f"which has no {name!r}; take asyncgo_ctx in the test function and pass it on"
        )


@pytest.fixture
def asyncgo_ctx(request: pytest.FixtureRequest) -> Any:
    """An `asyncgo.Context` for the test, cancelled when it ends.

    Its deadline: the ``asyncgo_context(timeout=...)`` marker, else ini
    ``asyncgo_context_timeout``, else none. The Context is made on the test's
    event loop as the test function starts (any backend), so only the test
    function receives it, not other fixtures (they get a placeholder that says
    so when used); a sync test asking for it fails at setup.
    """
    if _test_function(request.node) is None:
        pytest.fail(f"{request.node.nodeid}: {_CTX_ONLY}", pytrace=False)
    return _CtxPlaceholder()


@pytest.fixture
def asyncgo_no_leaks(request: pytest.FixtureRequest) -> no_leaks:
    """Turn on the leak check for this async test; returns it, to extend the allow-list.

    Example:
        ```python
        async def test_server(asyncgo_no_leaks):
            asyncgo_no_leaks.ignore_names.append("metrics-flusher")
        ```
    """
    check: no_leaks | None = request.node.stash.get(_LEAKS_KEY, None)
    if check is None:
        # a marker's options win over the fixture's defaults, checked as no_leaks() does
        marker = request.node.get_closest_marker("asyncgo_no_leaks")
        options: dict[str, Any] = {}
        if marker is not None:
            options = {k: v for k, v in marker.kwargs.items() if k != "enabled"}
        options.setdefault("grace", _float_ini(request.config, "asyncgo_leak_grace") or 0.0)
        request.node.stash[_LEAKS_KEY] = check = no_leaks(**options)
    return check


@pytest.fixture
def asyncgo_detect_deadlocks(request: pytest.FixtureRequest) -> None:
    """Run this async test under deadlock detection even when the session turned it off."""
    request.node.stash[_DEADLOCKS_KEY] = True


def _context_timeout(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("asyncgo_context")
    if marker is not None and "timeout" in marker.kwargs:
        t = marker.kwargs["timeout"]
        return None if t is None else float(t)
    return _float_ini(item.config, "asyncgo_context_timeout")


def _wrap(
    fn: Callable[..., Awaitable[Any]],
    leaks: no_leaks | None,
    deadlocks: bool,
    ctx_timeout: float | None,
    wants_ctx: bool,
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def asyncgo_test(*args: Any, **kwargs: Any) -> Any:
        # (a hypothesis test's inner test: one call, so one check, per example)
        try:
            async with AsyncExitStack() as stack:
                if leaks is not None:
                    await stack.enter_async_context(leaks)
                if wants_ctx and isinstance(kwargs.get(_CTX), _CtxPlaceholder):
                    from asyncgo._context import background, with_cancel, with_timeout

                    if ctx_timeout is None:
                        ctx, cancel = with_cancel(background())
                    else:
                        ctx, cancel = with_timeout(background(), ctx_timeout)
                    stack.callback(cancel)
                    kwargs[_CTX] = ctx
                if deadlocks:
                    await stack.enter_async_context(debug.detect_deadlocks())
                return await fn(*args, **kwargs)
        except (Deadlock, BaseExceptionGroup) as exc:
            if deadlocks and (isinstance(exc, Deadlock) or exc.subgroup(Deadlock) is not None):
                _hint(exc)
            raise

    # (anyio's plugin marks its own hypothesis wrapper so: this one is not it)
    asyncgo_test.__dict__.pop(_ANYIO_ORIGINAL, None)
    return asyncgo_test


_DEADLOCK_HINT = (
    "(asyncgo's pytest plugin runs every async test under detect_deadlocks(). If a "
    "thread started before the test, or another process, will wake a task, the test "
    "is not stuck: mark it @pytest.mark.asyncgo_detect_deadlocks(False).)"
)


def _hint(exc: BaseException) -> None:
    """Tell how to turn detection off, below a `Deadlock` the plugin's scope raised."""
    if _DEADLOCK_HINT not in getattr(exc, "__notes__", ()):
        exc.add_note(_DEADLOCK_HINT)


#: The attribute anyio's pytest plugin sets on its wrapper of a hypothesis test's
#: inner test, pointing at the ``async def`` it wraps.
_ANYIO_ORIGINAL = "_anyio_original_func"


def _test_function(item: pytest.Item) -> Callable[..., Awaitable[Any]] | None:
    """The ``async def`` the plugin wraps for *item*, None if it is not an async test.

    The test function itself; for a hypothesis test (``@given`` on an ``async def``)
    its inner test, which hypothesis calls once per example (what pytest-asyncio and
    anyio's plugin run on their event loop).
    """
    if not isinstance(item, pytest.Function):
        return None
    fn = getattr(item, "obj", None)
    handle = getattr(fn, "hypothesis", None)
    if handle is not None:
        fn = getattr(handle, "inner_test", None)
        fn = getattr(fn, _ANYIO_ORIGINAL, fn)  # anyio's wrapper, left from a former run
    return fn if inspect.iscoroutinefunction(fn) else None


def _async_test(item: pytest.Item) -> TypeGuard[pytest.Function]:
    """Whether *item* is an ``async def`` test the plugin wraps (hypothesis' too)."""
    return _test_function(item) is not None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    # Diagnostics on for the whole of a test run under deadlock detection, fixture
    # setup and teardown included: a fixture's worker that parks before the test
    # function starts (`async for job in jobs`) is recorded, and the primitives that
    # fixtures make have creation sites for the report. (The detector also finds
    # tasks parked while diagnostics were off, but cannot say where their
    # primitives were made.)
    if not _async_test(item) or not (
        _deadlocks_on(item) or "asyncgo_detect_deadlocks" in item.fixturenames
    ):
        return (yield)
    with debug.enabled():
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    # Swap the test function for a wrapped one around the whole call, before the
    # async plugin (pytest-asyncio's runtest, anyio's pytest_pyfunc_call) reads it.
    # A hypothesis test: its inner test, read by hypothesis at each call (as
    # pytest-asyncio and anyio's plugin swap it for their runner), so each example
    # runs wrapped, with a check of its own.
    fn = _test_function(item)
    if fn is None or not isinstance(item, pytest.Function):
        return (yield)
    leaks = _leak_check(item)
    deadlocks = _deadlocks_on(item)
    wants_ctx = _CTX in item.fixturenames
    if leaks is None and not deadlocks and not wants_ctx:
        return (yield)
    wrapped = _wrap(fn, leaks, deadlocks, _context_timeout(item) if wants_ctx else None, wants_ctx)
    handle = getattr(item.obj, "hypothesis", None)
    if handle is not None:
        before = handle.inner_test
        handle.inner_test = wrapped
        try:
            return (yield)
        finally:
            handle.inner_test = before
    obj = item.obj
    item.obj = wrapped
    try:
        return (yield)
    finally:
        item.obj = obj
