"""Seed 002 §5, 并发错误收集: run everything, keep every error, one per item.

Go::

    type Result struct {
        Value int
        Err   error
    }

    func processWithErrors(items []int) []Result {
        results := make([]Result, len(items))
        var wg sync.WaitGroup
        for i, item := range items {
            wg.Add(1)
            go func(index, value int) {
                defer wg.Done()
                result, err := process(value)
                results[index] = Result{Value: result, Err: err}
            }(i, item)
        }
        wg.Wait()
        return results
    }

    func process(n int) (int, error) {
        if n < 0 {
            return 0, errors.New("negative number")
        }
        return n * 2, nil
    }

Unlike errgroup (``examples/errgroup.py``), no error stops the others: every item
is processed and its error kept beside it. asyncgo, three ways:

1. the seed as it is: a task per item writes ``results[index]``; the task group's
   block end is ``wg.Wait()`` (the task catches its own error, so none escapes);
2. ``errors.Join``: the errors gathered into one ``ExceptionGroup``, which the
   caller takes apart with ``except*``;
3. a ``WorkerPool``: every job's handle keeps its own result or exception, a
   failing job never cancels the others, and the pool bounds the concurrency
   (the seed starts one goroutine per item).

Run: ``python examples/error_collection.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import anyio

from asyncgo import WorkerPool


class NegativeNumber(ValueError):
    """The seed's ``errors.New("negative number")``."""


async def process(n: int) -> int:
    await anyio.sleep(0.001 * abs(n))  # some work; the failing items are not the slowest
    if n < 0:
        raise NegativeNumber(f"negative number: {n}")
    return n * 2


@dataclass
class Result:
    value: int = 0
    err: Exception | None = None


async def process_with_errors(items: list[int]) -> list[Result]:
    results = [Result() for _ in items]

    async def one(index: int, value: int) -> None:
        try:
            results[index] = Result(value=await process(value))
        except Exception as e:  # the error stays with its item
            results[index] = Result(err=e)

    async with anyio.create_task_group() as tg:  # the block's end is wg.Wait()
        for i, item in enumerate(items):
            tg.start_soon(one, i, item)  # go func(index, value int) {...}(i, item)
    return results


async def process_all_or_raise(items: list[int]) -> list[int]:
    """Like Go's ``errors.Join``: every item is processed; then all errors at once."""
    results = await process_with_errors(items)
    errors = [r.err for r in results if r.err is not None]
    if errors:
        raise ExceptionGroup(f"{len(errors)} of {len(items)} items failed", errors)
    return [r.value for r in results]


ITEMS = [3, -1, 4, -5, 9, 2, -6]


async def main() -> None:
    # 1. The seed: a Result per item.
    results = await process_with_errors(ITEMS)
    for item, r in zip(ITEMS, results, strict=True):
        print(f"  {item:3} -> {r}")
    assert [r.value for r in results if r.err is None] == [6, 8, 18, 4]
    assert [str(r.err) for r in results if r.err] == [
        "negative number: -1",
        "negative number: -5",
        "negative number: -6",
    ]

    # 2. errors.Join: one exception carrying every error.
    joined: list[Exception] = []
    try:
        await process_all_or_raise(ITEMS)
    except* NegativeNumber as eg:
        print("errors.Join:", eg.message, [str(e) for e in eg.exceptions])
        joined.extend(eg.exceptions)
    assert len(joined) == 3
    assert await process_all_or_raise([1, 2]) == [2, 4]

    # 3. A pool of 3 workers: handles hold the results and the errors.
    async with WorkerPool(workers=3) as pool:
        handles = [await pool.submit(process, n) for n in ITEMS]
    failed = [h.exception() for h in handles if h.exception() is not None]
    values = [h.result() for h in handles if h.exception() is None]
    print("pool:", values, "errors:", [str(e) for e in failed], pool.stats())
    assert values == [6, 8, 18, 4] and len(failed) == 3
    assert pool.stats().done == 4 and pool.stats().failed == 3
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
