"""Seed 004 §3.1, worker pool + channel pipeline: Parse -> Validate -> Store, tuned.

Go (the seed)::

    jobs := make(chan *Task, 128)      // 输入缓冲防生产者阻塞
    results := make(chan *Result, 64)  // 输出缓冲平衡消费速率
    // Producer -> Stage1: Parse -> Stage2: Validate -> Stage3: Store -> Consumer
    // knobs: workerCount, pipelineBuffer (backpressure), batchSize (throughput vs latency)

asyncgo: the three stages chained with ``|``; the seed's knobs are arguments:
``pipeline(..., buffer=128)`` (every link's buffer), ``stages.buffer(64)`` (one
link), ``stages.batch(size, timeout)`` (batchSize, with a bound on how long a
short batch waits) and ``stages.map(store, workers=4)`` (workerCount, here for the
slow stage only). A record that fails validation is dropped by ``filter``; one
that cannot be parsed stops the whole pipeline with its error.

Run: ``python examples/pipeline_etl.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import anyio

from asyncgo import pipeline, stages


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    amount: float


def raw_lines(n: int) -> list[str]:
    return [json.dumps({"id": i, "amount": (i % 7) - 1.5}) for i in range(n)]


def parse(line: str) -> Record:  # Stage1: Parse (CPU, sync)
    d = json.loads(line)
    return Record(d["id"], d["amount"])


def valid(r: Record) -> bool:  # Stage2: Validate
    return r.amount >= 0


class Store:
    """Stage3: Store, a batch per round trip to a (simulated) database."""

    def __init__(self) -> None:
        self.rows: list[Record] = []
        self.round_trips = 0

    async def write(self, batch: list[Record]) -> int:
        await anyio.sleep(0.002)  # one round trip
        self.rows.extend(batch)
        self.round_trips += 1
        return len(batch)


async def main(quick: bool = False) -> None:
    n = 500 if quick else 5000
    db = Store()
    p = (
        pipeline(raw_lines(n), buffer=128)  # jobs := make(chan *Task, 128)
        | stages.map(parse)
        | stages.filter(valid)
        | stages.buffer(64)  # results := make(chan *Result, 64)
        | stages.batch(50, timeout=0.01)  # batchSize 50, a short batch waits <= 10 ms
        | stages.map(db.write, workers=4, ordered=False)  # workerCount 4
    )
    written = sum(await p.collect())
    want = sum(1 for i in range(n) if (i % 7) - 1.5 >= 0)
    print(f"stored {written} of {n} records in {db.round_trips} round trips")
    assert written == want == len(db.rows)
    assert len({r.id for r in db.rows}) == want
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
