"""Diagnose a task leak: Go's goleak and goroutine dump, for async tasks.

Seeds 000 §4, 001 §4.3 and 004 §2.1 (Goroutine 泄漏, pprof). A request handler
starts a worker into the server's long-lived task group (so the worker outlives
the request) and forgets to close the worker's channel: the seed articles'
``leakyWorker``, blocked forever in ``for range ch``. `num_tasks()` grows with
every request; `no_leaks()` fails the request with the leaked task's stack,
labels and the line that made its channel; the fix -- closing the channel, or
starting the worker inside the request's own group -- passes.

Run: ``python examples/diagnose_leak.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio
from anyio.abc import TaskGroup

from asyncgo import Chan, debug
from asyncgo.testing import TaskLeakError, no_leaks


async def leaky_worker(jobs: Chan[str]) -> None:
    async for job in jobs:  # ends only when jobs is closed
        print("   processed", job)


async def handle(server: TaskGroup, request_id: int, *, fixed: bool) -> None:
    jobs = Chan[str](10)
    with debug.labels(request=request_id):
        server.start_soon(leaky_worker, jobs, name=f"worker-{request_id}")
    await jobs.send(f"thumbnail for request {request_id}")
    if fixed:
        jobs.close()  # the worker drains the channel and ends


async def main() -> None:
    caught = []
    async with anyio.create_task_group() as server:  # lives as long as the server
        before = debug.num_tasks()
        for request_id in (1, 2):
            try:
                async with no_leaks(grace=0.2):
                    await handle(server, request_id, fixed=False)
            except TaskLeakError as e:
                print(f"== request {request_id}: asyncgo.testing.TaskLeakError")
                print(e)
                caught.append(str(e))
        after = debug.num_tasks()
        print(f"== tasks: {before} before the requests, {after} after\n")
        dump = debug.dump()
        print(dump)
        async with no_leaks(grace=0.2):
            await handle(server, 3, fixed=True)
        print("== request 3 (fixed): no leak")
        server.cancel_scope.cancel()
    assert len(caught) == 2 and after == before + 2, (caught, before, after)
    assert '"worker-1"' in caught[0] and "{request=2}" in caught[1]
    assert "leaky_worker" in dump
    print("ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    args = p.parse_args()
    if args.backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=args.backend)
