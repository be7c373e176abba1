"""Seed 003 ch.1/§2.3/§2.5/§4.1: the loop-variable capture trap, and the three fixes.

Go (before 1.22)::

    for i := 0; i < 3; i++ {
        go func() {
            fmt.Println(i) // 输出可能全为3
        }()
    }

    for i := 0; i < 3; i++ {
        go func(val int) {
            fmt.Println(val) // 输出0、1、2
        }(i)
    }

The seed's three correct ways (§2.5): copy the value, pass it as a parameter, or
declare a local inside the loop; and (§4.1) give each concurrent batch task its
own private copy of the data instead of sharing a variable.

Python never changed this: a closure captures the *variable*, and a task
started with ``start_soon`` only runs at the parent's next ``await`` -- after the
loop has finished -- so every closure sees the last value. asyncgo's APIs take
the function and its arguments separately (``tg.start_soon(fn, i)``,
``await g.go(fn, i)``, ``pool.submit(fn, i)``), which binds the value at the
call, like Go's ``go func(val int){...}(i)``. ruff's ``B023`` flags the trap.

Run: ``python examples/loop_capture.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import functools

import anyio

from asyncgo import Group


async def main() -> None:
    # The trap: every task reads i after the loop is over.
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        for i in range(3):

            async def show() -> None:
                seen.append(i)  # the bug being shown (ruff B023 flags it)

            tg.start_soon(show)
    print("closure over the loop variable:", seen)
    assert seen == [2, 2, 2]

    async def show_value(val: int, out: list[int]) -> None:
        out.append(val)

    # Fix 1: pass the value as an argument (Go: go func(val int){...}(i)).
    seen = []
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(show_value, i, seen)
    assert sorted(seen) == [0, 1, 2]

    # Fix 2: copy it into the closure's own parameter (a default is bound at definition).
    seen = []
    async with anyio.create_task_group() as tg:
        for i in range(3):

            async def show_copy(val: int = i) -> None:
                seen.append(val)

            tg.start_soon(show_copy)
    assert sorted(seen) == [0, 1, 2]

    # Fix 3: bind it with functools.partial (a local made per iteration).
    seen = []
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(functools.partial(show_value, i, seen))
    assert sorted(seen) == [0, 1, 2]
    print("passed as an argument, a default, a partial: [0, 1, 2] each time")

    # Seed §4.1: a batch of tasks, each with its own private copy of its task data.
    tasks = [{"id": n, "status": "new"} for n in range(5)]
    handled: list[int] = []

    async def process(task: dict[str, object]) -> None:
        private = dict(task)  # the seed's `privateData := {...task}`
        await anyio.sleep(0.001)
        private["status"] = "done"
        handled.append(int(str(private["id"])))

    async with Group(limit=2) as g:
        for task in tasks:
            await g.go(process, task)
    print("batch:", sorted(handled), "originals untouched:", {t["status"] for t in tasks})
    assert sorted(handled) == [0, 1, 2, 3, 4]
    assert all(t["status"] == "new" for t in tasks)
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
