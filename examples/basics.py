"""Seeds 001 ch.1/§2.2, 000 §1, 003 §2.1: goroutines, channels, closing, sync.Once.

Go (seed 001 ch.1: a goroutine, and a channel handing over a value)::

    func say(s string) {
        for i := 0; i < 3; i++ {
            time.Sleep(100 * time.Millisecond)
            fmt.Println(s)
        }
    }
    func main() {
        go say("world") // 启动一个goroutine
        say("hello")
    }

    ch := make(chan string)
    go func() { ch <- "data" }()
    msg := <-ch // 接收数据,阻塞直到有值

Go (seed 001 §2.2: the sender closes; ``v, ok``; ``range``)::

    ch := make(chan int, 3)
    go func() {
        defer close(ch)
        ch <- 1
        ch <- 2
    }()
    val, ok := <-ch    // ok == false: closed and drained
    for val := range ch { fmt.Println(val) }

Go (seed 003 §2.1: a channel send happens before the matching receive completes)::

    func setup() { x = 1; y = 2; done <- true }
    func main()  { go setup(); <-done; println(x, y) } // 安全读取 x=1, y=2

Seed 000 §1 adds directional channels (``<-chan T``), "the creator closes", and
``sync.Once``.

asyncgo: ``go f(x)`` is ``tg.start_soon(f, x)`` in a task group, whose block
waits for the task (Go's ``main`` returning would kill ``say("world")``
mid-way). Channels are ``Chan[T](n)``: ``await ch.send(v)``, ``await
ch.recv()``, ``await ch.recv_ok()``, ``async for``, ``ch.close()``;
``send_only()`` / ``recv_only()`` are the directional views. Sending on a closed
channel raises ``ChanClosed`` (Go panics). ``Once`` runs an async init once.

Run: ``python examples/basics.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import Chan, ChanClosed, RecvChan, SendChan
from asyncgo.sync import Once


async def say(s: str, out: list[str]) -> None:
    for _ in range(3):
        await anyio.sleep(0.002)  # the seed's 100 ms
        out.append(s)


async def produce(ch: SendChan[int]) -> None:
    try:
        await ch.send(1)
        await ch.send(2)
    finally:
        ch.close()  # defer close(ch): the sender (creator) closes


async def main() -> None:
    # 1. go say("world"); say("hello")
    out: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(say, "world", out)  # go say("world")
        await say("hello", out)
    print("say:", out)
    assert sorted(out) == ["hello"] * 3 + ["world"] * 3
    # The two run at the same time: neither says all three lines before the other
    # starts. (Which comes first within a tick is the scheduler's choice; trio picks
    # at random, and on a loaded machine one may say two lines in a row.)
    assert out[:3] not in (["hello"] * 3, ["world"] * 3), "the two run at the same time"

    # 2. A value handed over on an unbuffered channel.
    ch = Chan[str]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.send, "data")  # go func() { ch <- "data" }()
        msg = await ch.recv()  # blocks until there is a value
    assert msg == "data"

    # 3. The sender closes; v, ok; range.
    nums = Chan[int](3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce, nums.send_only())  # the producer sees a send-only view
    consumer: RecvChan[int] = nums.recv_only()
    assert await consumer.recv_ok() == (1, True)  # val, ok := <-ch
    rest = [v async for v in consumer]  # for val := range ch
    assert rest == [2]
    assert await consumer.recv_ok() == (None, False)  # closed and drained
    try:
        await nums.send(3)
    except ChanClosed as e:
        print("send on a closed channel:", e)  # Go: panic
    else:
        raise AssertionError("send on a closed channel must fail")
    try:
        nums.close()
    except ChanClosed as e:
        print("close of a closed channel:", e)
    else:
        raise AssertionError("closing twice must fail")
    print("len/cap:", len(nums), nums.cap, "closed:", nums.closed)

    # 4. Happens-before: what setup wrote before the send is visible after the receive.
    state = {"x": 0, "y": 0}
    done = Chan[bool]()

    async def setup() -> None:
        state["x"] = 1
        state["y"] = 2
        await done.send(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(setup)
        await done.recv()
        print("after <-done:", state["x"], state["y"])
        assert (state["x"], state["y"]) == (1, 2)

    # 5. sync.Once: ten tasks ask for the config; it is loaded once.
    once = Once()
    loads: list[str] = []

    async def load_config() -> None:
        await anyio.sleep(0.001)
        loads.append("loaded")

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(once.do, load_config)
    print("Once:", loads)
    assert loads == ["loaded"]
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
