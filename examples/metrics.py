"""Seeds 000 §5 (可观测性: latency mean µ and σ) and 001 ch5 (Prometheus: QPS, latency, errors).

The seeds name the numbers -- "公式化监控延迟指标如平均响应时间 µ和标准差 σ" (seed 000), "采集
QPS、延迟、错误率等指标" (seed 001) -- but show no code. In Go they come from wrapping each
unit of work::

    start := time.Now()
    err := job(ctx)
    jobDuration.Observe(time.Since(start).Seconds())       // prometheus.Histogram
    jobsTotal.WithLabelValues(outcome(err)).Inc()          // prometheus.CounterVec

asyncgo: the same wrapper around each job a `WorkerPool` runs -- ``timed(job, submitted, fn)``
records the job's queue wait and service time and counts its outcome -- plus the
pool's ``on_progress`` callback, called with `PoolStats` after every job that returns or
raises, for a live error rate. Plain Python, no dependency: Welford's online algorithm
keeps mean and σ in constant memory (as a streaming metrics library would), checked here against
`statistics` over every sample; throughput is jobs / elapsed seconds; error rate is
failed / finished. The run checks its numbers: exact counts and error rate agreeing
with the pool's, one latency sample per job, streaming and batch statistics agreeing,
and Little's law (throughput × mean service time = busy workers, at most the pool size).

The same numbers exported to Prometheus (``pip install prometheus-client``; not a
dependency of asyncgo)::

    from prometheus_client import Counter, Gauge, Histogram, start_http_server

    JOBS = Counter("jobs", "Jobs finished, by outcome", ["outcome"])  # jobs_total
    SERVICE = Histogram("job_service_seconds", "Time a job ran")
    QUEUED = Gauge("pool_queued_jobs", "Jobs waiting for a worker")

    async def timed(fn, *args):
        with SERVICE.time():
            try:
                result = await fn(*args)
            except Exception:
                JOBS.labels("error").inc()
                raise
        JOBS.labels("ok").inc()
        return result

    start_http_server(8000)  # /metrics, scraped by Prometheus
    async with WorkerPool(workers=20, on_progress=lambda s: QUEUED.set(s.queued)) as pool:
        ...

and in PromQL: QPS ``sum(rate(jobs_total[1m]))``; error rate
``sum(rate(jobs_total{outcome="error"}[1m])) / sum(rate(jobs_total[1m]))``; mean latency
``rate(job_service_seconds_sum[1m]) / rate(job_service_seconds_count[1m])``; p99
``histogram_quantile(0.99, rate(job_service_seconds_bucket[1m]))``. A histogram has no σ
(it keeps no sum of squares): export the running σ below as a ``Gauge`` if you need it.
OpenTelemetry spans for the same jobs: docs/otel.md.

Run: ``python examples/metrics.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from asyncgo import PoolStats, WorkerPool

JOBS = 200
WORKERS = 20
FAIL_EVERY = 10  # job i fails when i % FAIL_EVERY == 7: exactly 10 % of the jobs


@dataclass
class RunningStats:
    """Count, mean and σ of a stream of samples in O(1) memory (Welford, 1962)."""

    count: int = 0
    mean: float = 0.0
    _m2: float = 0.0  # sum of squared differences from the current mean

    def add(self, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (x - self.mean)

    @property
    def stdev(self) -> float:
        """Population standard deviation: the samples are every job of the run."""
        return math.sqrt(self._m2 / self.count) if self.count else 0.0


@dataclass
class Metrics:
    """What a metrics library would hold: counters and latency summaries."""

    ok: int = 0
    errors: int = 0
    service: RunningStats = field(default_factory=RunningStats)  # time the job ran
    response: RunningStats = field(default_factory=RunningStats)  # queue wait + service
    samples: list[tuple[int, float, float]] = field(default_factory=list)  # to check

    def error_rate(self) -> float:
        finished = self.ok + self.errors
        return self.errors / finished if finished else 0.0


metrics = Metrics()


async def timed(job: int, submitted: float, fn: Callable[[int], Awaitable[object]]) -> object:
    """Run ``fn(job)``, recording its latencies and outcome (the Go wrapper above)."""
    start = time.perf_counter()
    try:
        result = await fn(job)
    except Exception:
        metrics.errors += 1
        raise
    else:
        metrics.ok += 1
        return result
    finally:
        end = time.perf_counter()
        metrics.service.add(end - start)
        metrics.response.add(end - submitted)
        metrics.samples.append((job, end - start, end - submitted))


def planned(job: int) -> float:
    """The job's duration: 2-8 ms, the same on every run."""
    return random.Random(job).uniform(0.002, 0.008)


async def handle(job: int) -> int:
    await anyio.sleep(planned(job))  # stands for an RPC or a query
    if job % FAIL_EVERY == 7:
        raise ConnectionError(f"job {job}: upstream refused")
    return job


class Progress:
    """``on_progress``: a live error rate from the pool's own counters."""

    def __init__(self) -> None:
        self.last: PoolStats | None = None

    def __call__(self, s: PoolStats) -> None:
        self.last = s
        finished = s.done + s.failed
        if finished % 50 == 0:
            print(f"progress: {finished} jobs, {s.failed} failed ({s.failed / finished:.1%})")


def check_statistics() -> None:
    """The arithmetic, on numbers worked out by hand: 10, 20, 30, 40 ms."""
    rs = RunningStats()
    for x in (0.010, 0.020, 0.030, 0.040):
        rs.add(x)
    assert math.isclose(rs.mean, 0.025)
    assert math.isclose(rs.stdev, math.sqrt(0.000125))  # √((15² + 5² + 5² + 15²)/4) ms


async def main() -> None:
    check_statistics()
    progress = Progress()
    handles = []
    t0 = time.perf_counter()
    async with WorkerPool(workers=WORKERS, on_progress=progress) as pool:
        for job in range(JOBS):
            # Stamped before submit(): waiting for room in the queue counts as latency.
            handles.append(await pool.submit(timed, job, time.perf_counter(), handle))
    elapsed = time.perf_counter() - t0
    failed = 0
    for h in handles:
        try:
            await h
        except ConnectionError:
            failed += 1

    finished = metrics.ok + metrics.errors
    throughput = finished / elapsed  # what Prometheus' rate(jobs_total[...]) gives
    svc, resp = metrics.service, metrics.response
    services = [x for _, x, _ in metrics.samples]
    percentiles = statistics.quantiles(services, n=100)
    p50, p99 = percentiles[49], percentiles[98]
    print(f"jobs: {finished} in {elapsed * 1000:.0f} ms -> {throughput:.0f} jobs/s")
    print(f"errors: {metrics.errors} ({metrics.error_rate():.1%})")
    print(
        f"service time: mean {svc.mean * 1000:.2f} ms, σ {svc.stdev * 1000:.2f} ms, "
        f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
    )
    print(
        f"response time (queue + service): mean {resp.mean * 1000:.2f} ms, "
        f"σ {resp.stdev * 1000:.2f} ms"
    )
    busy = throughput * svc.mean
    print(
        f"Little's law: {throughput:.0f} jobs/s x {svc.mean * 1000:.2f} ms "
        f"= {busy:.1f} busy workers of {WORKERS}"
    )

    # Counts: the wrapper, the handles and the pool's own counters agree, exactly.
    expected_errors = sum(1 for j in range(JOBS) if j % FAIL_EVERY == 7)
    assert expected_errors == 20
    assert (metrics.ok, metrics.errors, failed) == (JOBS - 20, 20, 20)
    assert metrics.error_rate() == 0.1
    s = pool.stats()
    assert (s.done, s.failed, s.cancelled) == (metrics.ok, metrics.errors, 0), s
    assert progress.last is not None and progress.last.failed == metrics.errors
    # Latencies: one sample per job, and waiting in the queue only adds to the service
    # time. (Not checked: that a job took at least its planned sleep. uvloop's timers
    # run on a millisecond clock cached once per loop turn, so by the wall clock a
    # sleep can end a millisecond or more early.)
    assert sorted(job for job, _, _ in metrics.samples) == list(range(JOBS))
    for _, service, response in metrics.samples:
        assert response >= service > 0
    # Streaming (Welford) and batch statistics agree.
    assert math.isclose(svc.mean, statistics.fmean(services), rel_tol=1e-9)
    assert math.isclose(svc.stdev, statistics.pstdev(services), rel_tol=1e-9)
    assert svc.stdev > 0 and p50 <= p99
    # Little's law: no more jobs run at once than there are workers.
    assert busy <= WORKERS * (1 + 1e-9), busy
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
