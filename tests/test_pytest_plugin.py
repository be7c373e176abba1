"""The asyncgo pytest plugin, run with pytester under pytest-asyncio and under anyio's plugin."""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]


def plugin_args() -> list[str]:
    """Load the plugin by module unless its pytest11 entry point is installed already."""
    eps = importlib.metadata.entry_points(group="pytest11")
    if any(ep.value == "asyncgo.testing.pytest_plugin" for ep in eps):
        return []
    return ["-p", "asyncgo.testing.pytest_plugin"]


#: Plugins the inner runs do not need (hypothesis' costs seconds per session).
QUIET = ("-p", "no:hypothesispytest", "-p", "no:xdist")

ASYNCIO_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
{extra}
"""

ANYIO_INI = """
[pytest]
{extra}
"""

ANYIO_HEADER = """
import anyio
import pytest
from asyncgo import Chan, debug

pytestmark = pytest.mark.anyio

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


def run_asyncio(pytester: pytest.Pytester, *args: str, extra: str = "") -> pytest.RunResult:
    pytester.makeini(ASYNCIO_INI.format(extra=extra))
    return pytester.runpytest(
        *plugin_args(), "-p", "no:anyio", "-p", "no:cacheprovider", *QUIET, *args
    )


def run_anyio(pytester: pytest.Pytester, *args: str, extra: str = "") -> pytest.RunResult:
    pytester.makeini(ANYIO_INI.format(extra=extra))
    return pytester.runpytest(
        *plugin_args(), "-p", "no:asyncio", "-p", "no:cacheprovider", *QUIET, *args
    )


def test_pytest_asyncio_deadlock_fails_with_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        from asyncgo import Chan

        async def test_jam():
            ch = Chan[int]()
            async def sender():
                await ch.send(1)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(sender(), name="sender-a")
                tg.create_task(sender(), name="sender-b")

        async def test_owner_alone():
            await Chan[str]().recv()

        async def test_fine():
            ch = Chan[int](1)
            await ch.send(1)
            assert await ch.recv() == 1
        """
    )
    result = run_asyncio(pytester)
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "Deadlock: all tasks are asleep - deadlock!" in out
    assert '"sender-a" [chan send, ' in out and '"sender-b" [chan send, ' in out
    assert "ch = Chan[int]()" in out
    assert "[chan recv, " in out
    # each failure says how to turn detection off for a test that is not stuck (in its
    # report; the summary lines repeat it where pytest does not shorten them: CI=true)
    reports = out.split("short test summary info")[0]
    assert reports.count("mark it @pytest.mark.asyncgo_detect_deadlocks(False)") == 2
    # strict mode: only marked tests are pytest-asyncio's; the wrapper keeps the marker
    pytester.makepyfile(
        """
        import pytest
        from asyncgo import Chan

        @pytest.mark.asyncio
        async def test_jam():
            await Chan[int]().send(1)
        """
    )
    pytester.makeini(ASYNCIO_INI.format(extra="").replace("asyncio_mode = auto", ""))
    result = pytester.runpytest(*plugin_args(), "-p", "no:anyio", "-p", "no:cacheprovider", *QUIET)
    result.assert_outcomes(failed=1)
    assert "all tasks are asleep - deadlock!" in result.stdout.str()


def test_anyio_plugin_deadlock_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ANYIO_HEADER
        + """
from asyncgo.sync import Mutex, WaitGroup

async def test_inversion():
    a, b = Mutex(), Mutex()
    wg = WaitGroup()
    wg.add(2)
    async def take(x, y):
        async with x:
            wg.done()
            await wg.wait()
            async with y:
                pass
    async with anyio.create_task_group() as tg:
        tg.start_soon(take, a, b)
        tg.start_soon(take, b, a)

async def test_idioms_still_pass():
    ch = Chan[int]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.recv)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    with anyio.move_on_after(0.05):
        await ch.recv()
"""
    )
    result = run_anyio(pytester)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert out.count("all tasks are asleep - deadlock!") >= 2
    assert "[mutex lock, " in out and "a, b = Mutex(), Mutex()" in out
    assert "test_inversion[asyncio]" in out and "test_inversion[trio]" in out
    reports = out.split("short test summary info")[0]
    assert reports.count("mark it @pytest.mark.asyncgo_detect_deadlocks(False)") == 2


def test_a_test_can_expect_its_deadlock(pytester: pytest.Pytester) -> None:
    """Under the plugin's detection, a test's own task parked on a primitive gets Deadlock
    raised where it waits: ``pytest.raises`` around the await catches it."""
    body = """
    ch = Chan[int]()
    with pytest.raises(Deadlock, match="all tasks are asleep - deadlock!"):
        await ch.recv()
    buffered = Chan[int](1)  # the test goes on
    await buffered.send(1)
    assert await buffered.recv() == 1
"""
    pytester.makepyfile(
        ANYIO_HEADER + "from asyncgo import Deadlock\n\nasync def test_expects_deadlock():" + body
    )
    run_anyio(pytester).assert_outcomes(passed=2)
    pytester.makepyfile(
        "import pytest\nfrom asyncgo import Chan, Deadlock\n\n"
        "async def test_expects_deadlock():" + body
    )
    run_asyncio(pytester).assert_outcomes(passed=1)


def test_a_test_can_expect_a_deadlock_among_its_tasks(pytester: pytest.Pytester) -> None:
    """The test's task waits in a Group's exit for children parked on channels: each
    child gets Deadlock where it waits, and the Group raises it as itself, so
    ``pytest.raises`` around the Group catches it; a native task group raises them in
    an ExceptionGroup (``except*``)."""
    body = """
    a, b = Chan[int](), Chan[int]()
    with pytest.raises(Deadlock, match="all tasks are asleep - deadlock!"):
        async with Group() as g:
            await g.go(a.recv)
            await g.go(b.send, 1)
    caught = 0
    try:
        async with TG() as tg:
            tg.start_soon(a.recv)
    except* Deadlock:
        caught += 1
    assert caught == 1
    buffered = Chan[int](1)  # the test goes on
    await buffered.send(1)
    assert await buffered.recv() == 1
"""
    pytester.makepyfile(
        ANYIO_HEADER
        + "from asyncgo import Deadlock, Group\nTG = anyio.create_task_group\n\n"
        + "async def test_expects_deadlock():"
        + body
    )
    run_anyio(pytester).assert_outcomes(passed=2)
    pytester.makepyfile(
        "import asyncio\nimport pytest\nfrom asyncgo import Chan, Deadlock, Group\n"
        "TG = asyncio.TaskGroup\n\n"
        "class Shim:\n"
        "    def __init__(self):\n"
        "        self.tg = asyncio.TaskGroup()\n"
        "    async def __aenter__(self):\n"
        "        await self.tg.__aenter__()\n"
        "        return self\n"
        "    async def __aexit__(self, *exc):\n"
        "        return await self.tg.__aexit__(*exc)\n"
        "    def start_soon(self, fn):\n"
        "        self.tg.create_task(fn())\n"
        "TG = Shim\n\n"
        "async def test_expects_deadlock():" + body
    )
    run_asyncio(pytester).assert_outcomes(passed=1)


def test_deadlock_detection_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ANYIO_HEADER
        + """
async def test_default():
    assert debug.is_enabled()  # the detector turns diagnostics on

@pytest.mark.asyncgo_detect_deadlocks(False)
async def test_marker_off():
    assert not debug.is_enabled()

async def test_fixture_on(asyncgo_detect_deadlocks):
    assert debug.is_enabled()
"""
    )
    run_anyio(pytester).assert_outcomes(passed=6)
    # the session switch turns the default off; the fixture still turns it on
    pytester.makepyfile(
        ANYIO_HEADER
        + """
async def test_default():
    assert not debug.is_enabled()

async def test_fixture_on(asyncgo_detect_deadlocks):
    assert debug.is_enabled()
"""
    )
    run_anyio(pytester, "--asyncgo-no-deadlocks").assert_outcomes(passed=4)
    run_anyio(pytester, extra="asyncgo_detect_deadlocks = false").assert_outcomes(passed=4)


LEAKY = """
async def leak(outer):
    ch = Chan[int]()
    outer.start_soon(ch.recv, name="leaked-recv")

@pytest.fixture
async def outer():
    async with anyio.create_task_group() as tg:
        yield tg
        tg.cancel_scope.cancel()
"""


def test_leak_marker_fixture_and_session_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ANYIO_HEADER
        + LEAKY
        + """
@pytest.mark.asyncgo_no_leaks(grace=0)
async def test_marker(outer):
    await leak(outer)

async def test_fixture(outer, asyncgo_no_leaks):
    assert asyncgo_no_leaks.grace == 0.25
    await leak(outer)

async def test_fixture_allow_list(outer, asyncgo_no_leaks):
    asyncgo_no_leaks.ignore_names.append("leaked-recv")
    await leak(outer)

async def test_unchecked(outer):
    await leak(outer)

async def test_clean(asyncgo_no_leaks):
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 0)
"""
    )
    result = run_anyio(pytester, extra="asyncgo_leak_grace = 0.25")
    result.assert_outcomes(passed=6, failed=4)
    out = result.stdout.str()
    assert "TaskLeakError: found 1 unexpected task still alive" in out
    assert '"leaked-recv" [chan recv, ' in out
    assert "ch = Chan[int]()" in out
    for name in ("test_marker", "test_fixture"):
        for backend in ("asyncio", "trio"):
            assert f"FAILED test_leak_marker_fixture_and_session_mode.py::{name}[{backend}]" in out

    # session mode: every async test is checked unless exempted
    pytester.makepyfile(
        ANYIO_HEADER
        + LEAKY
        + """
async def test_checked(outer):
    await leak(outer)

@pytest.mark.asyncgo_no_leaks(False)
async def test_exempt(outer):
    await leak(outer)
"""
    )
    run_anyio(pytester, "--asyncgo-leaks", extra="asyncgo_leak_grace = 0").assert_outcomes(
        passed=2, failed=2
    )
    run_anyio(pytester, extra="asyncgo_check_leaks = true\nasyncgo_leak_grace = 0").assert_outcomes(
        passed=2, failed=2
    )
    run_anyio(pytester).assert_outcomes(passed=4)


def test_leak_check_under_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        TASKS = []

        @pytest.mark.asyncgo_no_leaks(grace=0)
        async def test_fire_and_forget():
            TASKS.append(asyncio.create_task(asyncio.sleep(5), name="forgotten"))

        def test_cleanup():
            TASKS[0].cancel()
        """
    )
    result = run_asyncio(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert '"forgotten" [waiting]' in result.stdout.str()


def test_asyncgo_ctx_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ANYIO_HEADER
        + """
from asyncgo import Canceled, DeadlineExceeded, Context

SEEN = []

async def test_ctx(asyncgo_ctx):
    assert isinstance(asyncgo_ctx, Context)
    assert asyncgo_ctx.err() is None and asyncgo_ctx.deadline() is None
    SEEN.append(asyncgo_ctx)

def test_cancelled_at_the_end():
    assert len(SEEN) == 2
    assert all(isinstance(c.err(), Canceled) for c in SEEN)

@pytest.mark.asyncgo_context(timeout=0.05)
async def test_deadline(asyncgo_ctx):
    assert asyncgo_ctx.deadline() is not None
    await asyncgo_ctx.wait()
    assert isinstance(asyncgo_ctx.err(), DeadlineExceeded)
"""
    )
    run_anyio(pytester).assert_outcomes(passed=5)
    pytester.makepyfile(
        """
        from asyncgo import Context

        async def test_ini_timeout(asyncgo_ctx):
            assert isinstance(asyncgo_ctx, Context)
            assert asyncgo_ctx.deadline() is not None
        """
    )
    run_asyncio(pytester, extra="asyncgo_context_timeout = 30").assert_outcomes(passed=1)


XFAIL_AND_ASSERT = """
import pytest

class MyErr(Exception):
    pass

@pytest.mark.xfail(raises=MyErr, strict=True)
async def test_xfail_raises():
    raise MyErr("expected failure")

async def test_plain_assert():
    x = 1
    assert x == 2
"""


def test_test_errors_keep_their_type_under_the_deadlock_scope(pytester: pytest.Pytester) -> None:
    """The scope the plugin wraps every test in lets the test's own exception out as
    itself: ``xfail(raises=...)`` still matches, and a failed assert is reported as
    an AssertionError, not an ExceptionGroup (pytest-asyncio and anyio's plugin)."""
    pytester.makepyfile(test_a=XFAIL_AND_ASSERT)
    result = run_asyncio(pytester, "test_a.py")
    result.assert_outcomes(xfailed=1, failed=1)
    assert "ExceptionGroup" not in result.stdout.str()
    pytester.makepyfile(test_b=ANYIO_HEADER + XFAIL_AND_ASSERT)
    result = run_anyio(pytester, "test_b.py")
    result.assert_outcomes(xfailed=2, failed=2)
    assert "ExceptionGroup" not in result.stdout.str()


# -- a fixture's task parked before the test function starts ---------------------------
#
# Run in a subprocess with a timeout: before the fix these runs hung (a jam hidden by a
# worker the detector had not seen park), and a regression must fail, not hang CI.

GUARD = 120  # seconds: generous, never reached unless detection is broken


def run_guarded(pytester: pytest.Pytester, ini: str, *args: str) -> pytest.RunResult:
    pytester.makeini(ini)
    return pytester.runpytest_subprocess(
        *plugin_args(), "-p", "no:cacheprovider", *QUIET, *args, timeout=GUARD
    )


ANYIO_3_HEADER = """
import importlib.util
import anyio
import pytest
from asyncgo import Chan, debug

pytestmark = pytest.mark.anyio

@pytest.fixture(params=[
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop", marks=pytest.mark.skipif(
        importlib.util.find_spec("uvloop") is None, reason="no uvloop")),
    pytest.param(("trio", {}), id="trio"),
])
def anyio_backend(request):
    return request.param
"""


def test_jam_beside_a_fixture_worker_parked_in_setup_anyio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ANYIO_3_HEADER
        + """
@pytest.fixture
async def idle_worker():
    jobs = Chan()
    async def worker():
        async for j in jobs:
            pass
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, name="fixture-worker")
        yield jobs
        jobs.close()

async def test_jam(idle_worker):
    await Chan().recv()

async def test_fed(idle_worker):
    await anyio.sleep(0.05)
    await idle_worker.send(1)
"""
    )
    result = run_guarded(pytester, ANYIO_INI.format(extra=""), "-p", "no:asyncio")
    outcomes = result.parseoutcomes()
    backends = outcomes["failed"]
    assert backends in (2, 3)  # uvloop, when installed
    result.assert_outcomes(passed=backends, failed=backends)
    out = result.stdout.str()
    assert out.count("all tasks are asleep - deadlock!") >= backends
    # the fixture's channel has its creation site: diagnostics were on for the setup
    assert '"fixture-worker" [chan recv' in out and "jobs = Chan()" in out


def test_jam_beside_a_worker_parked_while_diagnostics_were_off_pytest_asyncio(
    pytester: pytest.Pytester,
) -> None:
    """A module-scoped fixture's worker re-parks during a test run without detection;
    a later test's jam must still be reported."""
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        import pytest_asyncio
        from asyncgo import Chan

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        @pytest_asyncio.fixture(loop_scope="module", scope="module")
        async def worker():
            jobs, results = Chan(), Chan()
            async def run():
                async for j in jobs:
                    await results.send(j * 2)
            t = asyncio.create_task(run(), name="module-worker")
            yield jobs, results
            jobs.close()
            await t

        @pytest.mark.asyncgo_detect_deadlocks(False)
        async def test_one_untraced(worker):
            jobs, results = worker
            await jobs.send(1)
            assert await results.recv() == 2
            await asyncio.sleep(0.01)  # the worker parks again, untraced

        async def test_two_jam(worker):
            jobs, results = worker
            await results.recv()  # nobody sent a job

        async def test_three_after_the_jam(worker):
            jobs, results = worker
            await jobs.send(3)
            assert await results.recv() == 6
        """
    )
    result = run_guarded(pytester, ASYNCIO_INI.format(extra=""), "-p", "no:anyio")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "::test_two_jam" in out and "asyncgo.Deadlock: all tasks are asleep" in out
    assert '"module-worker" [chan recv' in out


def test_marker_options_are_checked_when_the_fixture_is_used_too(
    pytester: pytest.Pytester,
) -> None:
    # Found by an audit: with the fixture, the marker's options were set on the check
    # as they came: ignore_names="worker" became ['w', 'o', 'r', 'k', 'e', 'r'] (a
    # confusing TaskLeakError), grace=-1 was taken.
    pytester.makepyfile(
        ANYIO_HEADER
        + """
@pytest.mark.asyncgo_no_leaks(ignore_names="worker")
async def test_a_string(asyncgo_no_leaks):
    pass

@pytest.mark.asyncgo_no_leaks(grace=-1)
async def test_negative_grace(asyncgo_no_leaks):
    pass

@pytest.mark.asyncgo_no_leaks(ignore_names=["worker"], grace=0.5)
async def test_fine(asyncgo_no_leaks):
    assert asyncgo_no_leaks.ignore_names == ["worker"] and asyncgo_no_leaks.grace == 0.5
"""
    )
    result = run_anyio(pytester)
    result.assert_outcomes(passed=2, errors=4)
    result.stdout.fnmatch_lines(["*TypeError*ignore_names*list of names*"])
    result.stdout.fnmatch_lines(["*ValueError*grace*"])


# -- hypothesis tests: wrapped example by example -----------------------------------
#
# Found by an audit: an async hypothesis test (``@given`` on an ``async def``) was left
# unwrapped: no deadlock detection (a jam hung, and hypothesis replayed it past
# pytest-timeout), no leak check, no Context. Guarded: before the fix these runs hung.

HYPOTHESIS_TESTS = """
from hypothesis import Phase, given, settings, strategies as st
from asyncgo import Chan, Context, debug

# (no explain phase: it traces each replay, seconds a failing test)
ONE = settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate, Phase.shrink])
SEEN = []

@ONE
@given(st.integers())
async def test_jam(n):
    await Chan[int]().recv()

@settings(max_examples=3, deadline=None, database=None)
@given(st.integers())
async def test_each_example_wrapped(asyncgo_ctx, n):
    assert debug.is_enabled()  # under deadlock detection
    assert isinstance(asyncgo_ctx, Context) and asyncgo_ctx.err() is None
    SEEN.append(asyncgo_ctx)

def test_a_context_per_example():
    assert len(SEEN) >= 3 and len(set(map(id, SEEN))) == len(SEEN)
    assert all(c.err() is not None for c in SEEN)  # each cancelled as its example ended
"""


def test_hypothesis_tests_under_pytest_asyncio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # whole lines in the short test summary
    pytester.makepyfile(
        "import asyncio\nimport pytest\n"
        + HYPOTHESIS_TESTS
        + """
@pytest.mark.asyncgo_no_leaks(grace=0)
@ONE
@given(st.integers())
async def test_leak(n):
    asyncio.get_running_loop().create_task(asyncio.sleep(30), name="hyp-leak")
"""
    )
    result = run_guarded(pytester, ASYNCIO_INI.format(extra=""), "-p", "no:anyio")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "::test_jam - asyncgo.Deadlock: all tasks are asleep" in out
    assert "[chan recv, " in out
    assert "TaskLeakError: found 1 unexpected task" in out and '"hyp-leak"' in out


def test_hypothesis_tests_under_anyio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # whole lines in the short test summary
    pytester.makepyfile(
        ANYIO_HEADER
        + LEAKY
        + HYPOTHESIS_TESTS.replace("len(SEEN) >= 3", "len(SEEN) >= 6")  # two backends
        + """
@pytest.mark.asyncgo_no_leaks(grace=0)
@ONE
@given(st.integers())
async def test_leak(outer, n):
    await leak(outer)
"""
    )
    result = run_guarded(pytester, ANYIO_INI.format(extra=""), "-p", "no:asyncio")
    result.assert_outcomes(passed=3, failed=4)
    out = result.stdout.str()
    for backend in ("asyncio", "trio"):
        assert f"::test_jam[{backend}] - asyncgo.Deadlock: all tasks are asleep" in out
        assert f"::test_leak[{backend}] - asyncgo.testing.TaskLeakError: found 1" in out
    assert '"leaked-recv" [chan recv, ' in out


def test_asyncgo_ctx_misuse_is_named(pytester: pytest.Pytester) -> None:
    """Found by an audit: a sync test or a fixture asking for ``asyncgo_ctx`` got
    ``AttributeError: '_CtxPlaceholder' object has no attribute 'err'``."""
    pytester.makepyfile(
        """
        import pytest
        from asyncgo import Context

        def test_sync(asyncgo_ctx):
            pass

        @pytest.fixture
        async def client(asyncgo_ctx):
            return asyncgo_ctx.done()

        async def test_through_a_fixture(client):
            pass

        async def test_fine(asyncgo_ctx):
            assert isinstance(asyncgo_ctx, Context)

        def test_sync_leak_check_is_not_an_error(asyncgo_no_leaks):
            pass  # leak checks are for async tests (documented)
        """
    )
    result = run_asyncio(pytester)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_sync*asyncgo_ctx is given only to async test functions*"
            "not to sync tests or other fixtures*",
            "*AttributeError: asyncgo_ctx is given only to async test functions*"
            "which has no 'done'*",
        ]
    )


@pytest.mark.parametrize("name", ["asyncgo_leak_grace", "asyncgo_context_timeout"])
def test_a_bad_ini_value_stops_the_session_once(pytester: pytest.Pytester, name: str) -> None:
    """Checked when the plugin is configured: a usage error before any test runs, not
    a failure of every test that reads the value (or none, if no test does)."""
    pytester.makepyfile(ANYIO_HEADER + "\nasync def test_a():\n    pass\n")
    result = run_anyio(pytester, extra=f"{name} = abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{name} must be a number of seconds, not 'abc'" in result.stderr.str()
    assert "test_a" not in result.stdout.str()  # no test ran
