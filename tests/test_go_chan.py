"""Go's own channel and select tests, ported to asyncgo (acceptance tests).

Sources, from the Go repository (golang/go):

* ``src/runtime/chan_test.go``: TestChan, TestNonblockRecvRace,
  TestNonblockSelectRace(2), TestSelfSelect, TestSelectStress,
  TestSelectFairness, TestChanSendInterface, TestPseudoRandomSend,
  TestMultiConsumer, TestSelectDuplicateChannel, TestSelectStackAdjust (its
  channel part);
* ``test/chan/``: doubleselect, fifo, goroutines, nonblock, powser1, select,
  select2 .. select8, sendstmt, sieve1, sieve2, zerosize;
* ``test/closedchan.go``, ``test/chancap.go``, ``test/chanlinear.go`` (queue
  length instead of timing).

How Go maps onto asyncgo here:

* ``go f()`` is a task in an anyio task group; ``time.Sleep(time.Millisecond)``
  used "to let the goroutine block" is ``anyio.wait_all_tasks_blocked()``;
  ``runtime.Gosched()`` is ``anyio.lowlevel.checkpoint()``.
* A receive from a closed, drained channel yields Go's zero value; asyncgo's
  contract differs on purpose: ``recv()`` raises `ChanClosed`, ``recv_ok()``
  returns ``(None, False)``, a recv case fires with ``ok=False``.
* A panic (send on a closed channel, closing twice) is `ChanClosed`.
* A nil channel exists only as ``None`` in a select case.
* Every test runs twice: as is, and with `asyncgo.debug` diagnostics on (the
  traced park path).
* Iteration counts are scaled down (the ratio is noted at each test) so that
  the file runs in seconds per backend; nothing asserts on wall-clock time
  (``fail_after`` only turns a hang into a failure).

Skipped, and why:

* TestShrinkStackDuringBlockedSend, TestNoShrinkStackWhileParking, the stack
  part of TestSelectStackAdjust: Go stack shrinking / GC, no Python equivalent.
* TestChanSendBarrier / TestChanSendSelectBarrier (newer Go): GC write barriers.
* The benchmarks in chan_test.go: benchmarks/ covers channels and select.
* test/chan/perm.go: compile-time direction errors (tests/test_chan.py checks
  the run-time ``AttributeError`` / ``TypeError`` of the directional views).
* test/chan/select4.go, select5.go's "order" templates, sendstmt.go's
  ``sendprec``: Go evaluation order of ``select`` left-hand sides and operator
  precedence; Python evaluates call arguments left to right and a case has no
  left-hand side. select5's case combinations are ported.
* test/chan/powser2.go: powser1.go (ported) with interface values instead of a
  struct for the coefficients: the same channel network.
* test/chan/sieve.go: a pre-Go-1 copy of sieve1.go.
* closedchan.go's ``close(nil)``: asyncgo has no nil channel object.
"""

from __future__ import annotations

import gc
import heapq
import math
import tracemalloc
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from fractions import Fraction
from random import Random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncgo import Chan, ChanClosed, Selected, WouldBlock, debug, recv, select, send

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=["plain", "traced"])
def diagnostics(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test twice: as is, and with `asyncgo.debug` on, whose tracer sends parks
    through a separate code path (``Chan._park``, ``_send_slow``)."""
    if request.param == "plain":
        yield
    else:
        with debug.enabled():
            yield


#: Only turns a deadlock into a failure; never a timing assertion.
HANG_GUARD = 60


async def gosched() -> None:
    """Go's ``runtime.Gosched()``."""
    await anyio.lowlevel.checkpoint()


async def settle() -> None:
    """Go's ``time.Sleep(time.Millisecond)`` "so that the goroutine blocks"."""
    await anyio.wait_all_tasks_blocked()


# -- src/runtime/chan_test.go: TestChan ------------------------------------------------

# Go: for chanCap := 0; chanCap < 200 (short: 20); here 0..19 and a few larger ones.
TEST_CHAN_CAPS = [*range(20), 64, 199]


async def _recv_from_empty_blocks(cap: int) -> None:
    c: Chan[int] = Chan(cap)
    got: list[str] = []

    async def recv1() -> None:
        await c.recv()
        got.append("recv1")

    async def recv2() -> None:
        await c.recv_ok()
        got.append("recv2")

    async with anyio.create_task_group() as tg:
        tg.start_soon(recv1)
        tg.start_soon(recv2)
        await settle()
        assert got == [], f"chan[{cap}]: receive from empty chan"
        # Non-blocking receive does not block.
        with pytest.raises(WouldBlock):
            c.recv_nowait()
        assert await select(recv(c), default=True) == Selected(-1, None, False)
        await c.send(0)
        await c.send(0)
    assert sorted(got) == ["recv1", "recv2"]
    assert len(c) == 0


async def _send_to_full_blocks(cap: int) -> None:
    c: Chan[int] = Chan(cap)
    for i in range(cap):
        await c.send(i)
    sent: list[bool] = []

    async def sender() -> None:
        await c.send(0)
        sent.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await settle()
        assert not sent, f"chan[{cap}]: send to full chan"
        # Non-blocking send does not block.
        assert (await select(send(c, 0), default=True)).index == -1
        with pytest.raises(WouldBlock):
            c.send_nowait(0)
        await c.recv()
    assert sent == [True]
    assert len(c) == cap


async def _recv_from_closed(cap: int) -> None:
    c: Chan[int] = Chan(cap)
    for i in range(cap):
        await c.send(i)
    c.close()
    for i in range(cap):
        assert await c.recv() == i
    # Go: v := <-c gives the zero value; asyncgo: recv() raises ChanClosed.
    with pytest.raises(ChanClosed):
        await c.recv()
    assert await c.recv_ok() == (None, False)


async def _close_unblocks_recv(cap: int) -> None:
    c: Chan[int] = Chan(cap)
    done: Chan[bool] = Chan()

    async def receiver() -> None:
        v, ok = await c.recv_ok()
        await done.send(v is None and ok is False)

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await settle()
        c.close()
        assert await done.recv(), f"chan[{cap}]: received non zero from closed chan"


async def _fifo_and_many_producers(cap: int) -> None:
    c: Chan[int] = Chan(cap)

    async def send_100() -> None:
        for i in range(100):
            await c.send(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_100)
        for i in range(100):
            assert await c.recv() == i
    # Same, but using recv_ok (Go's recv2).
    async with anyio.create_task_group() as tg:
        tg.start_soon(send_100)
        for i in range(100):
            assert await c.recv_ok() == (i, True)
    # P producers and P consumers of L integers each: every value arrives P times.
    p_count, length = 4, 250  # Go: 4 x 1000
    results: Chan[Counter[int]] = Chan()

    async def producer() -> None:
        for i in range(length):
            await c.send(i)

    async def consumer() -> None:
        got: Counter[int] = Counter()
        for _ in range(length):
            got[await c.recv()] += 1
        await results.send(got)

    total: Counter[int] = Counter()
    async with anyio.create_task_group() as tg:
        for _ in range(p_count):
            tg.start_soon(producer)
        for _ in range(p_count):
            tg.start_soon(consumer)
        for _ in range(p_count):
            total += await results.recv()
    assert len(total) == length, f"chan[{cap}]: received {len(total)} values, expected {length}"
    assert set(total.values()) == {p_count}


def _len_cap(cap: int) -> None:
    c: Chan[int] = Chan(cap)
    assert (len(c), c.cap) == (0, cap)
    for i in range(cap):
        c.send_nowait(i)
    assert (len(c), c.cap) == (cap, cap)


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("cap", TEST_CHAN_CAPS)
async def test_chan(cap: int) -> None:
    """TestChan: blocking, non-blocking, close, FIFO, MPMC and len/cap, per capacity."""
    with anyio.fail_after(HANG_GUARD):
        await _recv_from_empty_blocks(cap)
        await _send_to_full_blocks(cap)
        await _recv_from_closed(cap)
        await _close_unblocks_recv(cap)
        await _fifo_and_many_producers(cap)
        _len_cap(cap)


# -- TestNonblockRecvRace, TestNonblockSelectRace, TestNonblockSelectRace2 -----------------


async def _maybe_yield(rng: Random) -> None:
    """A random number of scheduler round trips: varies the interleaving (Go: real threads)."""
    for _ in range(rng.randrange(3)):
        await gosched()


@pytest.mark.usefixtures("no_leaks")
async def test_nonblock_recv_race() -> None:
    """A closed channel is always ready: a select with default never takes the default."""
    rng = Random(1)
    failures: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        for i in range(300):  # Go: 10000 (short: 100)
            c: Chan[int] = Chan(1)
            await c.send(1)

            async def nonblocking(i: int = i, c: Chan[int] = c) -> None:
                await _maybe_yield(rng)
                if (await select(recv(c), default=True)).index == -1:
                    failures.append(i)

            async with anyio.create_task_group() as tg:
                tg.start_soon(nonblocking)
                await _maybe_yield(rng)
                c.close()
                await _maybe_yield(rng)
                await c.recv_ok()  # Go: <-c (the 1, or the zero value once closed)
    assert failures == [], "chan is not ready"


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("closing", [False, True], ids=["send", "close"])
async def test_nonblock_select_race(closing: bool) -> None:
    """Select sees the channels at one moment: with one of c1, c2 always ready, never default.

    closing=True is TestNonblockSelectRace2: ``close(c2)`` replaces ``c2 <- 1``.
    """
    rng = Random(2)
    done: Chan[bool] = Chan(1)
    with anyio.fail_after(HANG_GUARD):
        for _ in range(300):  # Go: 100000 (short: 1000)
            c1: Chan[int] = Chan(1)
            c2: Chan[int] = Chan(0 if closing else 1)
            await c1.send(1)

            async def selector(c1: Chan[int] = c1, c2: Chan[int] = c2) -> None:
                await _maybe_yield(rng)
                r = await select(recv(c1), recv(c2), default=True)
                await done.send(r.index != -1)

            async with anyio.create_task_group() as tg:
                tg.start_soon(selector)
                await _maybe_yield(rng)
                if closing:
                    c2.close()
                else:
                    await c2.send(1)
                await _maybe_yield(rng)
                await select(recv(c1), default=True)
                assert await done.recv(), "no chan is ready"


# -- TestSelfSelect ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("cap", [0, 10])
async def test_self_select(cap: int) -> None:
    """Send and receive on the same channel in one select: no crash, no deadlock, and on an
    unbuffered channel a select never receives its own value."""
    c: Chan[int] = Chan(cap)
    self_receives: list[int] = []

    async def worker(p: int) -> None:
        for i in range(500):  # Go: 1000
            if p == 0 or i % 2 == 0:
                r = await select(send(c, p), recv(c))
                got = r.index == 1
            else:
                r = await select(recv(c), send(c, p))
                got = r.index == 0
            if got and cap == 0 and r.value == p:
                self_receives.append(p)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, 0)
            tg.start_soon(worker, 1)
    assert self_receives == [], "self receive"


# -- TestSelectStress ------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_select_stress() -> None:
    """4 senders, 4 receivers, a select over 4 sends and a select over 4 receives, on
    unbuffered and buffered channels, interacting chaotically: no deadlock, counts exact."""
    c: list[Chan[int]] = [Chan(0), Chan(0), Chan(2), Chan(3)]
    n = 1000  # Go: 1e5 (short: 1e4)
    received = [0, 0, 0, 0]

    async def sender(k: int) -> None:
        for _ in range(n):
            await c[k].send(0)

    async def receiver(k: int) -> None:
        for _ in range(n):
            await c[k].recv()
            received[k] += 1

    async def select_sender() -> None:
        counts = [0, 0, 0, 0]
        c1: list[Chan[int] | None] = list(c)
        for _ in range(4 * n):
            r = await select(send(c1[3], 0), send(c1[2], 0), send(c1[0], 0), send(c1[1], 0))
            k = (3, 2, 0, 1)[r.index]
            counts[k] += 1
            if counts[k] == n:
                c1[k] = None
        assert counts == [n] * 4

    async def select_receiver() -> None:
        counts = [0, 0, 0, 0]
        c1: list[Chan[int] | None] = list(c)
        for _ in range(4 * n):
            r = await select(recv(c1[0]), recv(c1[1]), recv(c1[2]), recv(c1[3]))
            assert r.ok
            counts[r.index] += 1
            received[r.index] += 1
            if counts[r.index] == n:
                c1[r.index] = None
        assert counts == [n] * 4

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            for k in range(4):
                tg.start_soon(sender, k)
                tg.start_soon(receiver, k)
            tg.start_soon(select_sender)
            tg.start_soon(select_receiver)
    assert received == [2 * n] * 4
    assert all(len(ch) == 0 for ch in c)


# -- TestSelectFairness ----------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_select_fairness() -> None:
    """Two ready cases among four are chosen about equally often (within 10 sigma, as Go)."""
    trials = 2000  # Go: 10000
    c1: Chan[int] = Chan(trials + 1)
    c2: Chan[int] = Chan(trials + 1)
    for _ in range(trials + 1):
        c1.send_nowait(1)
        c2.send_nowait(2)
    c3: Chan[int] = Chan()
    c4: Chan[int] = Chan()
    out: Chan[int] = Chan()
    done: Chan[None] = Chan()

    async def worker() -> None:
        while True:
            b = (await select(recv(c3), recv(c4), recv(c1), recv(c2))).value
            if (await select(send(out, b), recv(done))).index == 1:
                return

    cnt: Counter[int] = Counter()
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            for _ in range(trials):
                cnt[await out.recv()] += 1
            done.close()
    assert set(cnt) <= {1, 2}, f"unexpected values {cnt}"
    mean = trials * 0.5
    stddev = math.sqrt(trials * 0.5 * 0.5)
    assert abs(cnt[1] - mean) <= 10 * stddev, f"unfair select: {cnt[1]}, {cnt[2]}"


# -- TestChanSendInterface, test/chan/sendstmt.go ----------------------------------------


async def test_chan_send_interface() -> None:
    class MT:
        pass

    m = MT()
    c: Chan[object] = Chan(1)
    await c.send(m)
    assert (await select(send(c, m), default=True)).index == -1
    assert (await select(send(c, m), send(c, MT()), default=True)).index == -1
    assert c.recv_nowait() is m


async def test_sendstmt_chanchan() -> None:
    """``case <-cc <- 2``: send on a channel received from a channel."""
    cc: Chan[Chan[int]] = Chan(1)
    c: Chan[int] = Chan(1)
    await cc.send(c)
    assert (await select(send(await cc.recv(), 2), default=True)).index == 0
    assert await c.recv() == 2


# -- TestPseudoRandomSend ----------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_pseudo_random_send_buffered() -> None:
    """TestPseudoRandomSend, chanCap = n: two ready send cases are picked at random."""
    n = 100
    c: Chan[int] = Chan(n)
    got: list[int] = []

    async def consumer() -> None:
        for _ in range(n):
            await gosched()
            got.append(await c.recv())

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            for _ in range(n):
                await select(send(c, 1), send(c, 0))
    n0, n1 = got.count(0), got.count(1)
    assert n0 > n // 10 and n1 > n // 10, f"want pseudorandom, got {n0} zeros and {n1} ones"


@pytest.mark.usefixtures("no_leaks")
async def test_pseudo_random_send_unbuffered() -> None:
    """TestPseudoRandomSend, chanCap = 0. Go's receiver runs ``Gosched`` before each receive,
    so the selecting sender is usually parked by then; here the receiver waits until it is,
    every time (a deterministic form of the same test)."""
    n = 100
    c: Chan[int] = Chan()
    got: list[int] = []

    async def consumer() -> None:
        for _ in range(n):
            await settle()  # the sender is parked in its select
            got.append(await c.recv())

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            for _ in range(n):
                await select(send(c, 1), send(c, 0))
    n0, n1 = got.count(0), got.count(1)
    assert n0 > n // 10 and n1 > n // 10, f"want pseudorandom, got {n0} zeros and {n1} ones"


@pytest.mark.usefixtures("no_leaks")
async def test_parked_select_duplicate_recv_case_is_random() -> None:
    """``select { case <-c: case <-c: }`` parked, then one send: either case may fire (Go
    permutes cases on the same channel), so both fire over 100 trials."""
    fired: Counter[int] = Counter()
    with anyio.fail_after(HANG_GUARD):
        for _ in range(100):
            c: Chan[int] = Chan()

            async def selector(c: Chan[int] = c) -> None:
                fired[(await select(recv(c), recv(c))).index] += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(selector)
                await settle()
                await c.send(1)
    assert fired[0] > 10 and fired[1] > 10, f"cases fired {dict(fired)}"


# -- TestMultiConsumer -------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_multi_consumer() -> None:
    """23 workers ``range`` over one channel and forward to another: nothing lost or doubled."""
    nwork = 23
    niter = 20000  # Go: 271828
    pn = [2, 3, 7, 11, 13, 17, 19, 23, 27, 31]
    q: Chan[int] = Chan(nwork * 3)
    r: Chan[int] = Chan(nwork * 3)
    expect = 0

    async def worker(w: int) -> None:
        async for v in q:
            if pn[w % len(pn)] == v:  # mess with the fifo-ish nature of range
                await gosched()
            await r.send(v)

    async def feeder_and_closer() -> None:
        nonlocal expect
        async with anyio.create_task_group() as workers:
            for i in range(nwork):
                workers.start_soon(worker, i)
            for i in range(niter):
                v = pn[i % len(pn)]
                expect += v
                await q.send(v)
            q.close()  # no more work; leaving the block waits for the workers
        r.close()  # ... so there can be no more results

    n = s = 0
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(feeder_and_closer)
            async for v in r:
                n += 1
                s += v
    assert (n, s) == (niter, expect)


# -- TestSelectDuplicateChannel, test/chan/select6.go ------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_select_duplicate_channel() -> None:
    """A select queued twice on c, woken through d, must leave c's queue intact for B."""
    c: Chan[int] = Chan()
    d: Chan[int] = Chan()
    e: Chan[int] = Chan()
    a_fired: list[int] = []
    b_got: list[int] = []

    async def goroutine_a() -> None:
        a_fired.append((await select(recv(c), recv(c), recv(d))).index)
        await e.send(9)

    async def goroutine_b() -> None:
        b_got.append(await c.recv())

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(goroutine_a)
            await settle()  # A is queued first on c
            tg.start_soon(goroutine_b)
            await settle()  # B is queued on c after A
            await d.send(7)  # wakes A, which dequeues itself from c
            assert await e.recv() == 9
            await c.send(8)  # must wake B, not the finished A
    assert a_fired == [2]
    assert b_got == [8]


@pytest.mark.usefixtures("no_leaks")
async def test_select6_failed_cases_keep_queues_intact() -> None:
    """Issue 2075: a select that lost on c1 while last in c1's queue must not corrupt it."""
    c1: Chan[bool] = Chan()
    c2: Chan[bool] = Chan()
    c3: Chan[bool] = Chan()
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:

            async def first() -> None:
                await c1.recv()

            async def second() -> None:
                r = await select(recv(c1), recv(c2))
                assert r.index == 1, "dummy"
                await c3.send(True)
                await c1.recv()

            tg.start_soon(first)
            await settle()
            tg.start_soon(second)
            await settle()
            tg.start_soon(c2.send, True)
            await c3.recv()
            await c1.send(True)
            await c1.send(True)


# -- test/chan/doubleselect.go -------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_doubleselect_never_runs_two_cases() -> None:
    """A select over four unbuffered sends, forwarded by four muxes: no value twice, none lost."""
    iterations = 5000  # Go: 100000
    cs: list[Chan[int]] = [Chan() for _ in range(4)]
    cmux: Chan[int] = Chan()

    async def sender() -> None:
        try:
            for i in range(iterations):
                await select(send(cs[0], i), send(cs[1], i), send(cs[2], i), send(cs[3], i))
        finally:
            for ch in cs:
                ch.close()

    async def mux(inp: Chan[int]) -> None:
        async for v in inp:
            await cmux.send(v)

    async def muxes() -> None:
        async with anyio.create_task_group() as tg:
            for ch in cs:
                tg.start_soon(mux, ch)
        cmux.close()

    seen: set[int] = set()
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            tg.start_soon(muxes)
            async for v in cmux:
                assert v not in seen, f"got duplicate value: {v}"
                seen.add(v)
    assert seen == set(range(iterations))


# -- test/chan/fifo.go, test/chan/goroutines.go --------------------------------------------


async def test_fifo_asynch() -> None:
    n = 10
    ch: Chan[int] = Chan(n)
    for i in range(n):
        await ch.send(i)
    for i in range(n):
        assert await ch.recv() == i


@pytest.mark.usefixtures("no_leaks")
async def test_fifo_synch_daisy_chain() -> None:
    """Receivers threaded together read an unbuffered channel's values in sequence."""
    n = 10
    ch: Chan[int] = Chan()

    async def chain(val: int, inp: Chan[int], out: Chan[int]) -> None:
        await inp.recv()
        assert await ch.recv() == val
        await out.send(1)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            inp: Chan[int] = Chan()
            start = inp
            for i in range(n):
                out: Chan[int] = Chan()
                tg.start_soon(chain, i, inp, out)
                inp = out
            await start.send(0)
            for i in range(n):
                await ch.send(i)
            await inp.recv()


@pytest.mark.usefixtures("no_leaks")
async def test_goroutines_daisy_chain() -> None:
    """Many tasks threaded together by unbuffered channels, torn down cleanly."""
    n = 2000  # Go: 10000

    async def f(left: Chan[int], right: Chan[int]) -> None:
        await left.send(await right.recv())

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            leftmost: Chan[int] = Chan()
            left = right = leftmost
            for _ in range(n):
                right = Chan()
                tg.start_soon(f, left, right)
                left = right
            tg.start_soon(right.send, 1)
            assert await leftmost.recv() == 1


# -- test/chan/nonblock.go -------------------------------------------------------------------

NONBLOCK_VALUES: list[tuple[object, object]] = [
    (123, 234),  # i32receiver / i32sender
    (123456, 234567),  # i64
    (True, True),  # bool
    ("hello", "hello again"),  # string
]


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("buffer", [0, 1])
async def test_nonblock(buffer: int) -> None:
    """Operations that test for blocking, via ``*_nowait`` and via select with default."""
    sync: Chan[bool] = Chan()

    async def receiver(c: Chan[object], want: object) -> None:
        assert await c.recv() == want
        await sync.send(True)

    async def sender(c: Chan[object], v: object) -> None:
        await c.send(v)
        await sync.send(True)

    with anyio.fail_after(HANG_GUARD):
        for k, (to_recv, to_send) in enumerate(NONBLOCK_VALUES):
            via_select = k % 2 == 1
            c: Chan[object] = Chan(buffer)
            # Nothing to receive: a non-blocking receive fails.
            with pytest.raises(WouldBlock):
                c.recv_nowait()
            assert await select(recv(c), default=True) == (-1, None, False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver, c, to_recv)
                await settle()
                # A receiver is waiting: a non-blocking send succeeds.
                if via_select:
                    assert (await select(send(c, to_recv), default=True)).index == 0
                else:
                    c.send_nowait(to_recv)
                await sync.recv()
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender, c, to_send)
                if buffer > 0:
                    await sync.recv()
                else:
                    await settle()
                # A sender is waiting (or its value is buffered): a non-blocking receive works.
                if via_select:
                    assert await select(recv(c), default=True) == (0, to_send, True)
                else:
                    assert c.recv_nowait() == to_send
                if buffer == 0:
                    await sync.recv()


# -- test/chan/select.go, select3.go, select7.go, select8.go --------------------------------


async def test_select_send_values_and_nil() -> None:
    """Every case's value is evaluated, nil cases included; each ready send fires once."""
    counter = 0
    shift = 0

    def get_value() -> int:
        nonlocal counter
        counter += 1
        return 1 << shift

    async def send_all(a: Chan[int] | None, b: Chan[int] | None) -> int:
        nonlocal shift
        i = 0
        while True:
            r = await select(send(a, get_value()), send(b, get_value()), default=True)
            if r.index == -1:
                return i
            i += 1
            if r.index == 0:
                a = None
            else:
                b = None
            shift += 1

    a: Chan[int] = Chan(1)
    b: Chan[int] = Chan(1)
    assert await send_all(a, b) == 2
    av, bv = await a.recv(), await b.recv()
    assert av | bv == 3, f"bad values {av} {bv}"
    assert await send_all(a, None) == 1
    assert counter == 10


async def _blocks(f: Callable[[], Awaitable[object]]) -> bool:
    """select3's testBlock: does *f* block (never finish without outside help)?"""
    finished: list[object] = []

    async def run() -> None:
        finished.append(await f())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await settle()
        tg.cancel_scope.cancel()
    return not finished


@pytest.mark.usefixtures("no_leaks")
async def test_select3_block_and_panic_semantics() -> None:
    """select3.go: which operations and selects block, which never do, which raise."""
    closedch: Chan[int] = Chan()
    closedch.close()

    async def recv_closed_10_times() -> None:
        for _ in range(10):
            with pytest.raises(ChanClosed):  # Go: the zero value
                await closedch.recv()
            assert await closedch.recv_ok() == (None, False)

    async def send_buffered() -> None:
        await Chan[int](1).send(7)

    async def recv_unready() -> object:
        return await Chan[int]().recv()

    async def select_unready() -> object:
        return await select(recv(Chan[int]()))

    async def select_ready_send() -> None:
        assert (await select(send(Chan[int](1), 7), default=True)).index == 0

    async def select_ready_recv() -> None:
        ch = Chan[int](1)
        await ch.send(7)
        assert await select(recv(ch), default=True) == (0, 7, True)

    async def self_select() -> object:
        c: Chan[int] = Chan()
        return await select(send(c, 1), recv(c))

    with anyio.fail_after(HANG_GUARD):
        # Sending/receiving on a nil channel (None in a select) blocks.
        assert await _blocks(lambda: select(send(None, 7)))
        assert await _blocks(lambda: select(recv(None)))
        # ... and with a default, a nil case is never selected.
        assert await select(send(None, 7), default=True) == (-1, None, False)
        assert await select(recv(None), default=True) == (-1, None, False)
        # Sending to a buffered channel with free space never blocks.
        assert not await _blocks(send_buffered)
        # Receiving from a closed channel never blocks.
        assert not await _blocks(recv_closed_10_times)
        # Sending to a closed channel raises (Go: panics).
        with pytest.raises(ChanClosed):
            await closedch.send(7)
        # Receiving from a non-ready channel always blocks.
        assert await _blocks(recv_unready)
        # Empty selects always block; so do selects with only nil channels.
        assert await _blocks(lambda: select())
        assert await _blocks(lambda: select(recv(None), send(None, 7)))
        # Selects with non-ready non-nil channels always block.
        assert await _blocks(select_unready)
        # Selects with default never block, nil cases or not.
        assert not await _blocks(lambda: select(default=True))
        assert (await select(default=True)).index == -1
        assert not await _blocks(lambda: select(recv(None), default=True))
        assert not await _blocks(lambda: select(send(None, 7), default=True))
        # Selects with ready channels do not block.
        assert not await _blocks(select_ready_send)
        assert not await _blocks(select_ready_recv)
        # Selects with closed channels behave like ordinary operations.
        assert await select(recv(closedch)) == (0, None, False)
        assert await select(recv(closedch), default=True) == (0, None, False)
        with pytest.raises(ChanClosed):
            await select(send(closedch, 7))
        with pytest.raises(ChanClosed):
            await select(send(closedch, 7), default=True)
        # A select does not get confused if it sees itself.
        assert await _blocks(self_select)


SELECT7_RECEIVERS: dict[str, Callable[[Chan[int]], Awaitable[object]]] = {
    "recv1": lambda c: c.recv(),
    "recv2": lambda c: select(recv(c)),
    "recv3": lambda c: select(recv(c), recv(Chan[int]())),
}
SELECT7_SENDERS: dict[str, Callable[[Chan[int]], Awaitable[object]]] = {
    "send1": lambda c: c.send(1),
    "send2": lambda c: select(send(c, 1)),
    "send3": lambda c: select(send(c, 1), send(Chan[int](), 1)),
}


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("receiver", SELECT7_RECEIVERS)
@pytest.mark.parametrize("sender", SELECT7_SENDERS)
async def test_select7_discarding_a_value(sender: str, receiver: str) -> None:
    """Every pairing of plain/select send with plain/select receive meets on an unbuffered
    channel, the receiver started first (and Gosched so it may have parked)."""
    for parked in (False, True):
        c: Chan[int] = Chan()
        got: list[object] = []

        async def run_receiver(c: Chan[int] = c) -> None:
            got.append(await SELECT7_RECEIVERS[receiver](c))

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_receiver)
                await (settle() if parked else gosched())
                await SELECT7_SENDERS[sender](c)
        assert got in ([1], [Selected(0, 1, True)])


@pytest.mark.usefixtures("no_leaks")
async def test_select8_cases_of_one_two_three() -> None:
    """1-, 2- and 3-case selects against a goroutine that only sends: its channel's send
    case can never fire."""
    ch: Chan[int] = Chan()

    async def forever() -> None:
        while True:
            await ch.send(5)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(forever)
            assert await select(recv(ch)) == (0, 5, True)
            assert (await select(default=True)).index == -1
            assert (await select(recv(ch), default=True)).index in (0, -1)
            for _ in range(50):
                r = await select(recv(ch), send(ch, 10), default=True)
                assert r.index in (0, -1), "the send case fired with no receiver"
            await settle()
            for _ in range(50):
                r = await select(recv(ch), send(ch, 10))
                assert r == (0, 5, True)
            tg.cancel_scope.cancel()


# -- test/chan/select2.go: selects do not consume undue memory ------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_select2_no_undue_memory() -> None:
    c: Chan[int] = Chan()
    dummy: Chan[int] = Chan()
    n = 5000  # Go: 100000

    async def sender() -> None:
        for _ in range(n):
            await c.send(1)

    async def receiver() -> None:
        for _ in range(n):
            r = await select(recv(c), recv(dummy))
            assert r.index == 0, "dummy"

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await receiver()

    with anyio.fail_after(HANG_GUARD):
        await run()  # warm up
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await run()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    # Go allows 1.1e5 bytes for 1e5 selects; a leaked tuple per select would be ~320 KB here.
    assert grown < 100_000, f"too much memory for {n} selects: {grown} bytes"
    # And the never-ready channel holds no dead entries of the finished selects.
    assert await select(send(dummy, 1), default=True) == (-1, None, False)


# -- test/chan/select5.go: the case combinations --------------------------------------------

DUMMY_CASES = ("send dummy", "recv dummy", "send nil", "recv nil")


def _combinations() -> list[tuple[tuple[str, ...], int, int | None]]:
    """(dummy cases, position of the real case, position of default or None)."""
    out: list[tuple[tuple[str, ...], int, int | None]] = []
    for mask in range(16):
        extra = tuple(d for i, d in enumerate(DUMMY_CASES) if mask >> i & 1)
        for pos in range(len(extra) + 1):
            for default in (None, 0, 1):  # Go: default before or after the real case
                out.append((extra, pos, default))
    return out


def _build(real: Any, extra: tuple[str, ...], pos: int, dummy: Chan[int]) -> tuple[list[Any], int]:
    cases: list[Any] = []
    for d in extra:
        kind, which = d.split()
        ch = dummy if which == "dummy" else None
        cases.append(send(ch, 1) if kind == "send" else recv(ch))
    cases.insert(pos, real)
    return cases, pos


async def test_select5_combinations() -> None:
    """Send n, receive it one way or another; send it one way or another, receive it; and the
    non-blocking combinations: every subset of dummy/nil cases, the real case at every
    position, with and without default."""
    c: Chan[int] = Chan(1)
    dummy: Chan[int] = Chan()
    n = 1
    for extra, pos, default in _combinations():
        # recv: c <- n, then a select receives it.
        await c.send(n)
        cases, idx = _build(recv(c), extra, pos, dummy)
        assert await select(*cases, default=default is not None) == (idx, n, True)
        n += 1
        # send: a select sends n, then <-c.
        cases, idx = _build(send(c, n), extra, pos, dummy)
        assert await select(*cases, default=default is not None) == (idx, None, True)
        assert await c.recv() == n
        n += 1
        # nonblock: only dummy and nil cases, plus the default.
        cases, _ = _build(recv(None), extra, pos, dummy)
        assert await select(*cases, default=True) == (-1, None, False)
    assert len(c) == 0
    with pytest.raises(WouldBlock):
        dummy.recv_nowait()


# -- test/chan/sieve1.go, sieve2.go --------------------------------------------------------

PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79]
PRIMES += [83, 89, 97]


@pytest.mark.usefixtures("no_leaks")
async def test_sieve1() -> None:
    """A daisy chain of filter tasks over unbuffered channels, cancelled when done."""
    async with anyio.create_task_group() as tg:

        async def generate(ch: Chan[int]) -> None:
            i = 2
            while True:
                await ch.send(i)
                i += 1

        async def filter_(inp: Chan[int], out: Chan[int], prime: int) -> None:
            async for i in inp:
                if i % prime != 0:
                    await out.send(i)

        async def sieve(primes: Chan[int]) -> None:
            ch: Chan[int] = Chan()
            tg.start_soon(generate, ch)
            while True:
                prime = await ch.recv()
                await primes.send(prime)
                ch1: Chan[int] = Chan()
                tg.start_soon(filter_, ch, ch1, prime)
                ch = ch1

        primes: Chan[int] = Chan()
        tg.start_soon(sieve, primes)
        with anyio.fail_after(HANG_GUARD):
            for p in PRIMES:
                assert await primes.recv() == p
        tg.cancel_scope.cancel()


@pytest.mark.usefixtures("no_leaks")
async def test_sieve2() -> None:
    """Eratosthenes over odd candidates, merging channels of multiples through a heap, with
    a select-driven send proxy that disables its output (nil case) while empty."""
    async with anyio.create_task_group() as tg:

        def odds() -> Chan[int]:
            out: Chan[int] = Chan(50)

            async def run() -> None:
                n = 5
                while True:
                    await out.send(n)
                    n += 2

            tg.start_soon(run)
            return out

        def multiples(p: int) -> Chan[int]:
            out: Chan[int] = Chan(10)

            async def run() -> None:
                n = p * p
                while True:
                    await out.send(n)
                    n += 2 * p

            tg.start_soon(run)
            return out

        def sendproxy(out: Chan[int]) -> Chan[int]:
            proxy: Chan[int] = Chan(10)

            async def run() -> None:
                buf: deque[int] = deque()
                while True:
                    c = out if buf else None  # buffer empty: disable output
                    e = buf[0] if buf else 0
                    r = await select(recv(proxy), send(c, e))
                    if r.index == 0:
                        buf.append(r.value)
                    else:
                        buf.popleft()

            tg.start_soon(run)
            return proxy

        def sieve() -> Chan[int]:
            out: Chan[int] = Chan(10)
            out.send_nowait(2)
            out.send_nowait(3)
            composites: Chan[int] = Chan(50)
            primes: Chan[int] = Chan(10)
            primes.send_nowait(3)

            async def merge() -> None:
                h: list[tuple[int, int, Chan[int]]] = []
                seq = 0
                min_ = 15
                while True:
                    m = multiples(await primes.recv())
                    head = await m.recv()
                    while min_ < head:
                        await composites.send(min_)
                        min_, _, minchan = heapq.heappop(h)
                        seq += 1
                        heapq.heappush(h, (await minchan.recv(), seq, minchan))
                    while min_ == head:
                        min_, _, minchan = heapq.heappop(h)
                        seq += 1
                        heapq.heappush(h, (await minchan.recv(), seq, minchan))
                    await composites.send(head)
                    seq += 1
                    heapq.heappush(h, (await m.recv(), seq, m))

            async def sift() -> None:
                proxied = sendproxy(primes)
                candidates = odds()
                p = await candidates.recv()
                while True:
                    c = await composites.recv()
                    while p < c:
                        await proxied.send(p)
                        await out.send(p)
                        p = await candidates.recv()
                    if p == c:
                        p = await candidates.recv()

            tg.start_soon(merge)
            tg.start_soon(sift)
            return out

        primes = sieve()
        with anyio.fail_after(HANG_GUARD):
            for p in PRIMES:
                assert await primes.recv() == p
        tg.cancel_scope.cancel()


# -- test/chan/zerosize.go: Go's struct{} is None --------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_zerosize_none_values() -> None:
    """Channels of None (Go's ``chan struct{}``): a None item is an item, not a close."""
    for cap in (0, 1):
        c: Chan[None] = Chan(cap)
        got: list[object] = []

        async def receive(c: Chan[None] = c) -> None:
            got.append(await c.recv())
            got.append(await c.recv_ok())
            got.append(await select(recv(c)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            for _ in range(3):
                await settle()
                await c.send(None)
        assert got == [None, (None, True), Selected(0, None, True)]
        c.close()
        assert await c.recv_ok() == (None, False)
        assert await select(recv(c)) == (0, None, False)


# -- test/closedchan.go, test/chancap.go ---------------------------------------------------

#: The dummy channel of closedchan.go's SSChan: never ready.
_NEVER: Chan[bool] = Chan()


class XChan:
    """Direct channel operations. ``recv`` mimics Go's ``<-c``: None once closed and drained."""

    def __init__(self, c: Chan[int]) -> None:
        self.c = c

    async def send(self, x: int) -> None:
        await self.c.send(x)

    async def nbsend(self, x: int) -> bool:
        try:
            self.c.send_nowait(x)
        except WouldBlock:
            return False
        return True

    async def recv(self) -> int | None:
        try:
            return await self.c.recv()
        except ChanClosed:
            return None

    async def nbrecv(self) -> tuple[int | None, bool]:
        try:
            return self.c.recv_nowait(), True
        except WouldBlock:
            return None, False
        except ChanClosed:
            return None, True

    async def recv2(self) -> tuple[int | None, bool]:
        return await self.c.recv_ok()

    async def nbrecv2(self) -> tuple[int | None, bool, bool]:
        try:
            return self.c.recv_nowait(), True, True
        except WouldBlock:
            return None, False, False
        except ChanClosed:
            return None, False, True


class SChan(XChan):
    """Indirect operations via single-case selects (plus default)."""

    def extra(self) -> list[Any]:
        return []

    async def send(self, x: int) -> None:
        await select(*self.extra(), send(self.c, x))

    async def nbsend(self, x: int) -> bool:
        return (await select(*self.extra(), send(self.c, x), default=True)).index >= 0

    async def recv(self) -> int | None:
        return (await select(*self.extra(), recv(self.c))).value

    async def nbrecv(self) -> tuple[int | None, bool]:
        r = await select(*self.extra(), recv(self.c), default=True)
        return r.value, r.index >= 0

    async def recv2(self) -> tuple[int | None, bool]:
        r = await select(*self.extra(), recv(self.c))
        return r.value, r.ok

    async def nbrecv2(self) -> tuple[int | None, bool, bool]:
        r = await select(*self.extra(), recv(self.c), default=True)
        return r.value, r.ok, r.index >= 0


class SSChan(SChan):
    """Indirect operations via larger selects (with a case on a never-ready channel)."""

    def extra(self) -> list[Any]:
        return [recv(_NEVER)]


CHAN_IMPLS = [XChan, SChan, SSChan]


async def _closed_test1(c: XChan) -> None:
    for _ in range(3):
        assert await c.recv() is None
        assert await c.recv2() == (None, False)
        # Received without blocking: selected.
        assert await c.nbrecv() == (None, True)
        assert await c.nbrecv2() == (None, False, True)
    # Go: Nbsend on a closed channel panics, even with a default.
    with pytest.raises(ChanClosed):
        await c.nbsend(1)
    assert await c.recv() is None  # the value was discarded
    with pytest.raises(ChanClosed):
        await c.send(2)
    assert await c.recv() is None
    assert len(c.c) == 0


async def _first_recv(c: XChan, how: int) -> None:
    """testasync1..4: the last buffered value is still received after close."""
    if how == 1:
        assert await c.recv() == 1
    elif how == 2:
        assert await c.recv2() == (1, True)
    elif how == 3:
        assert await c.nbrecv() == (1, True)
    else:
        assert await c.nbrecv2() == (1, True, True)


@pytest.mark.parametrize("impl", CHAN_IMPLS, ids=lambda c: c.__name__)
async def test_closedchan(impl: type[XChan]) -> None:
    closedsync: Chan[int] = Chan()
    closedsync.close()
    await _closed_test1(impl(closedsync))
    for how in (1, 2, 3, 4):
        closedasync: Chan[int] = Chan(2)
        await closedasync.send(1)
        closedasync.close()
        c = impl(closedasync)
        await _first_recv(c, how)
        await _closed_test1(c)


async def test_closedchan_close_twice_and_plain_recv() -> None:
    ch: Chan[int] = Chan()
    ch.close()
    with pytest.raises(ChanClosed, match="close of closed channel"):
        ch.close()
    # asyncgo's own forms of Go's zero-value receive.
    with pytest.raises(ChanClosed, match="recv on closed channel"):
        await ch.recv()
    with pytest.raises(ChanClosed, match="recv on closed channel"):
        ch.recv_nowait()
    with pytest.raises(ChanClosed, match="send on closed channel"):
        ch.send_nowait(1)
    assert [v async for v in ch] == []


async def test_chancap() -> None:
    c: Chan[int] = Chan(10)
    assert (len(c), c.cap) == (0, 10)
    for i in range(3):
        await c.send(i)
    assert (len(c), c.cap) == (3, 10)
    c = Chan()
    assert (len(c), c.cap) == (0, 0)


# -- close() with blocked senders and receivers (closedchan.go's TODO) ----------------------


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("cap", [0, 2])
async def test_close_wakes_blocked_senders_receivers_and_selects(cap: int) -> None:
    """Blocked receivers (plain and select) see the close; blocked senders (plain and
    select) raise ChanClosed (Go: panic); buffered items are delivered first."""
    full: Chan[int] = Chan(cap)
    for i in range(cap):
        full.send_nowait(i)
    empty: Chan[int] = Chan(cap)
    other: Chan[int] = Chan()
    outcomes: dict[str, object] = {}

    async def record(name: str, aw: Callable[[], Awaitable[object]]) -> None:
        try:
            outcomes[name] = await aw()
        except ChanClosed as e:
            outcomes[name] = str(e)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(record, "recv", empty.recv)
            tg.start_soon(record, "recv_ok", empty.recv_ok)
            tg.start_soon(record, "select recv", lambda: select(recv(other), recv(empty)))
            tg.start_soon(record, "send", lambda: full.send(99))
            tg.start_soon(record, "select send", lambda: select(recv(other), send(full, 98)))
            await settle()
            empty.close()
            full.close()
    assert outcomes == {
        "recv": "recv on closed channel",
        "recv_ok": (None, False),
        "select recv": Selected(1, None, False),
        "send": "send on closed channel",
        "select send": "send on closed channel",
    }
    assert [v async for v in full] == list(range(cap))


# -- test/chan/powser1.go: McIlroy's power series over demand channels ------------------------


class _Dch:
    """A demand channel: a request channel and a data channel (``None`` ends a series)."""

    def __init__(self) -> None:
        self.req: Chan[int] = Chan()
        self.dat: Chan[Fraction | None] = Chan()


class _Powser:
    """The power-series package of powser1.go; every ``go`` starts a task in *tg*."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.seqno = 0

    def go(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        self.tg.start_soon(fn, *args)

    # split reads one demand channel and replicates its output onto two, which may be
    # read at different rates (see powser1.go for the generations of dosplit).
    async def dosplit(self, inp: _Dch, out: list[_Dch], wait: Chan[int]) -> None:
        both = False  # do not service both channels
        if (await select(recv(out[0].req), recv(wait))).index == 1:
            both = True
            if (await select(recv(out[0].req), recv(out[1].req))).index == 1:
                out[0], out[1] = out[1], out[0]  # the array is shared, as in Go
        self.seqno += 1
        await inp.req.send(self.seqno)
        release: Chan[int] = Chan()
        self.go(self.dosplit, inp, out, release)
        dat = await inp.dat.recv()
        await out[0].dat.send(dat)
        if not both:
            await wait.recv()
        await out[1].req.recv()
        await out[1].dat.send(dat)
        await release.send(0)

    async def split(self, inp: _Dch, out: list[_Dch]) -> None:
        release: Chan[int] = Chan()
        self.go(self.dosplit, inp, out, release)
        await release.send(0)

    async def put(self, dat: Fraction | None, out: _Dch) -> None:
        await out.req.recv()
        await out.dat.send(dat)

    async def get(self, inp: _Dch) -> Fraction | None:
        self.seqno += 1
        await inp.req.send(self.seqno)
        return await inp.dat.recv()

    async def get2(self, in0: _Dch, in1: _Dch) -> list[Fraction | None]:
        """Get one item from each of two demand channels (Go's getn: nil-case toggling)."""
        req: list[Chan[int] | None] = [in0.req, in1.req]
        dat: list[Chan[Fraction | None] | None] = [None, None]
        out: list[Fraction | None] = [None, None]
        ins = (in0, in1)
        for _ in range(4):
            self.seqno += 1
            r = await select(
                send(req[0], self.seqno), send(req[1], self.seqno), recv(dat[0]), recv(dat[1])
            )
            if r.index < 2:
                dat[r.index] = ins[r.index].dat
                req[r.index] = None
            else:
                out[r.index - 2] = r.value
                dat[r.index - 2] = None
        return out

    async def copy(self, inp: _Dch, out: _Dch) -> None:
        while True:
            await out.req.recv()
            await out.dat.send(await self.get(inp))

    async def repeat(self, dat: Fraction, out: _Dch) -> None:
        while True:
            await self.put(dat, out)

    def split_ps(self, u: _Dch) -> list[_Dch]:
        uu = [_Dch(), _Dch()]
        self.go(self.split, u, uu)
        return uu

    def rep(self, c: Fraction) -> _Dch:
        z = _Dch()
        self.go(self.repeat, c, z)
        return z

    def add(self, u: _Dch, v: _Dch) -> _Dch:
        z = _Dch()

        async def run() -> None:
            while True:
                await z.req.recv()
                a, b = await self.get2(u, v)
                if a is not None and b is not None:
                    await z.dat.send(a + b)
                elif b is not None:
                    await z.dat.send(b)
                    await self.copy(v, z)
                elif a is not None:
                    await z.dat.send(a)
                    await self.copy(u, z)
                else:
                    await z.dat.send(None)

        self.go(run)
        return z

    def cmul(self, c: Fraction, u: _Dch) -> _Dch:
        z = _Dch()

        async def run() -> None:
            while True:
                await z.req.recv()
                x = await self.get(u)
                if x is None:
                    break
                await z.dat.send(c * x)
            await z.dat.send(None)

        self.go(run)
        return z

    def sub(self, u: _Dch, v: _Dch) -> _Dch:
        return self.add(u, self.cmul(Fraction(-1), v))

    def mul(self, u: _Dch, v: _Dch) -> _Dch:
        """UV = u*v + x*(u*VV+v*UU) + x*x*UU*VV."""
        z = _Dch()

        async def run() -> None:
            await z.req.recv()
            a, b = await self.get2(u, v)
            if a is None or b is None:
                await z.dat.send(None)
                return
            await z.dat.send(a * b)
            uu = self.split_ps(u)
            vv = self.split_ps(v)
            w = self.add(self.cmul(a, vv[0]), self.cmul(b, uu[0]))
            await z.req.recv()
            await z.dat.send(await self.get(w))
            await self.copy(self.add(w, self.mul(uu[1], vv[1])), z)

        self.go(run)
        return z

    def diff(self, u: _Dch) -> _Dch:
        z = _Dch()

        async def run() -> None:
            await z.req.recv()
            if await self.get(u) is not None:
                i = 1
                while (x := await self.get(u)) is not None:
                    await z.dat.send(i * x)
                    await z.req.recv()
                    i += 1
            await z.dat.send(None)

        self.go(run)
        return z

    def integ(self, c: Fraction, u: _Dch) -> _Dch:
        z = _Dch()

        async def run() -> None:
            await self.put(c, z)
            i = 1
            while True:
                await z.req.recv()
                x = await self.get(u)
                if x is None:
                    break
                await z.dat.send(x / i)
                i += 1
            await z.dat.send(None)

        self.go(run)
        return z

    async def exp(self, u: _Dch) -> _Dch:
        """Z = exp(U): DZ = Z*DU, integrated; a feedback loop through split."""
        zz = [_Dch(), _Dch()]
        await self.split(self.integ(Fraction(1), self.mul(zz[0], self.diff(u))), zz)
        return zz[1]

    def mon_subst(self, u: _Dch, c0: Fraction, n: int) -> _Dch:
        """U(c0 x^n)."""
        z = _Dch()

        async def run() -> None:
            c = Fraction(1)
            while True:
                await z.req.recv()
                x = await self.get(u)
                if x is None:
                    await z.dat.send(None)
                    return
                await z.dat.send(x * c)
                c *= c0
                for _ in range(1, n):
                    await z.req.recv()
                    await z.dat.send(Fraction(0))

        self.go(run)
        return z


@pytest.mark.usefixtures("no_leaks")
async def test_powser1() -> None:
    """Power series as networks of tasks and demand channels (selects with nil cases,
    splits that hand requests between generations, a feedback loop for exp)."""
    n = 10
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            ps = _Powser(tg)

            async def check(u: _Dch, want: list[Fraction], name: str) -> None:
                got = [await ps.get(u) for _ in want]
                assert got == want, name

            ones = ps.rep(Fraction(1))
            twos = ps.rep(Fraction(2))
            await check(ones, [Fraction(1)] * 5, "Ones")
            await check(ps.add(ones, twos), [Fraction(3)] * 5, "Add Ones Twos")
            await check(ps.diff(ones), [Fraction(i + 1) for i in range(n)], "Diff")
            integ = [Fraction(0)] + [Fraction(1, i) for i in range(1, n)]
            await check(ps.integ(Fraction(0), ones), integ, "Integ")
            await check(ps.cmul(Fraction(-1), twos), [Fraction(-2)] * n, "CMul")
            await check(ps.sub(ones, twos), [Fraction(-1)] * 5, "Sub Ones Twos")
            await check(ps.mul(ones, ones), [Fraction(i + 1) for i in range(n)], "Mul")
            e = [(1, 1), (1, 1), (3, 2), (13, 6), (73, 24), (167, 40), (4051, 720)]
            e += [(37633, 5040), (43817, 4480), (4596553, 362880)]
            await check(await ps.exp(ones), [Fraction(*t) for t in e], "Exp")
            atan = [Fraction(0) if i % 2 == 0 else Fraction((-1) ** (i // 2), i) for i in range(n)]
            at = ps.integ(Fraction(0), ps.mon_subst(ones, Fraction(-1), 2))
            await check(at, atan, "ATan")
            tg.cancel_scope.cancel()  # Go: os.Exit with the generators still running


# -- TestSelectStackAdjust (its channel part), test/chanlinear.go ---------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_select_stack_adjust_channel_part() -> None:
    """TestSelectStackAdjust without the stack shrinking: two selects parked on c and d, one
    with each channel twice, the other with two nil cases; ``close(d)`` wakes both on a d
    case, and nothing is received from c."""
    c: Chan[int] = Chan()
    d: Chan[int] = Chan()
    fired: list[Selected[int]] = []

    async def f(dup: bool) -> None:
        c2 = c if dup else None
        d2 = d if dup else None
        fired.append(await select(recv(c), recv(c2), recv(d), recv(d2)))

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(f, False)
            tg.start_soon(f, True)
            await settle()
            d.close()
    assert len(fired) == 2
    for r in fired:
        assert r.index in (2, 3) and r.value is None and r.ok is False
    assert (await select(send(c, 1), default=True)).index == -1  # c has no stale waiter


@pytest.mark.usefixtures("no_leaks")
async def test_chanlinear_dequeue_is_not_linear() -> None:
    """chanlinear.go: n tasks re-queue on a shared channel c each time they are woken through
    their own channel. Go times n vs 2n; here, without a clock, the shared channel's waiter
    queue must stay O(n) (a woken select leaves c's queue), not grow to n x messages."""
    n, messages = 300, 10
    c: Chan[bool] = Chan()
    a: list[Chan[bool]] = [Chan() for _ in range(n)]
    biggest = 0

    async def waiter(d: Chan[bool]) -> None:
        for _ in range(messages):
            await select(recv(c), recv(d))

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            for d in a:
                tg.start_soon(waiter, d)
            for _ in range(messages):
                for d in a:
                    await d.send(True)
                    biggest = max(biggest, len(c._recvq or ()))
    assert biggest <= 2 * n + 64, f"{biggest} entries queued on c for {n} waiters"
    assert not c._recvq
