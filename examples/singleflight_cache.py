"""Seed 000 §3, singleflight.Group: merge duplicate requests, so a cache miss queries once.

The seed: "singleflight.Group 合并重复请求防止缓存击穿，确保高并发下数据库查询仅执行一次".
In Go::

    var g singleflight.Group
    func getUser(id string) (User, error) {
        if u, ok := cache.Get(id); ok {
            return u, nil
        }
        v, err, _ := g.Do(id, func() (any, error) {
            u, err := db.QueryUser(id)     // one query, however many callers miss at once
            if err == nil { cache.Set(id, u) }
            return u, err
        })
        return v.(User), err
    }

asyncgo: ``async with singleflight.Group() as sf:`` then ``await sf.do(key,
fn, *args)``, which returns ``(value, shared)``. The call runs in a task of the
Group, not of the first caller: a caller that is cancelled leaves without
cancelling the query for the others. An error reaches every caller of that call
and is not remembered: the next miss queries again. ``sf.forget(key)`` is
``g.Forget``. Shown against the stampede without it: 100 concurrent misses, 100
queries.

Run: ``python examples/singleflight_cache.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import singleflight


class Database:
    def __init__(self) -> None:
        self.queries = 0
        self.down = False

    async def query_user(self, user_id: str) -> dict[str, str]:
        self.queries += 1
        await anyio.sleep(0.01)  # a slow query
        if self.down:
            raise ConnectionError("db: connection refused")
        return {"id": user_id, "name": f"user {user_id}"}


class UserService:
    def __init__(self, db: Database, sf: singleflight.Group | None) -> None:
        self.db, self.sf = db, sf
        self.cache: dict[str, dict[str, str]] = {}

    async def _load(self, user_id: str) -> dict[str, str]:
        user = await self.db.query_user(user_id)
        self.cache[user_id] = user
        return user

    async def get_user(self, user_id: str) -> dict[str, str]:
        if user_id in self.cache:
            return self.cache[user_id]
        if self.sf is None:  # no singleflight: every miss queries
            return await self._load(user_id)
        user, _shared = await self.sf.do(user_id, self._load, user_id)
        return user


async def burst(svc: UserService, user_ids: list[str]) -> list[object]:
    results: list[object] = [None] * len(user_ids)

    async def one(i: int, uid: str) -> None:
        try:
            results[i] = await svc.get_user(uid)
        except ConnectionError as e:
            results[i] = e

    async with anyio.create_task_group() as tg:
        for i, uid in enumerate(user_ids):
            tg.start_soon(one, i, uid)
    return results


async def main() -> None:
    # Without singleflight: a cache stampede.
    db = Database()
    results = await burst(UserService(db, None), ["42"] * 100)
    print(f"100 concurrent misses without singleflight: {db.queries} queries")
    assert db.queries == 100 and all(r == {"id": "42", "name": "user 42"} for r in results)

    async with singleflight.Group() as sf:
        db = Database()
        svc = UserService(db, sf)
        results = await burst(svc, ["42"] * 100)
        print(f"100 concurrent misses with singleflight: {db.queries} query")
        assert db.queries == 1 and all(r == {"id": "42", "name": "user 42"} for r in results)

        await burst(svc, ["42"] * 100)  # now a cache hit: no query
        assert db.queries == 1
        await burst(svc, ["1", "2", "3", "1", "2", "3"])  # one query per key
        print("3 keys, 6 callers:", db.queries - 1, "queries")
        assert db.queries == 4

        # An error reaches every caller of the call, and is not cached.
        db.down = True
        results = await burst(svc, ["7"] * 10)
        assert all(isinstance(r, ConnectionError) for r in results)
        assert len({id(r) for r in results}) == 1, "one call, one exception, shared"
        db.down = False
        assert (await svc.get_user("7"))["id"] == "7"  # the next miss queries again
        print("error shared by 10 callers, then a fresh query:", db.queries, "queries in all")
        assert db.queries == 6

        # A caller that gives up does not cancel the query for the others.
        release = anyio.Event()

        async def slow_query(user_id: str) -> dict[str, str]:
            await release.wait()  # (the query holds until both callers have come)
            return await db.query_user(user_id)

        got: list[tuple[dict[str, str], bool]] = []
        impatient = anyio.CancelScope()

        async def patient() -> None:
            got.append(await sf.do("slow", slow_query, "slow"))

        async def impatient_caller() -> None:
            with impatient:
                await sf.do("slow", slow_query, "slow")

        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            tg.start_soon(impatient_caller)
            await anyio.wait_all_tasks_blocked()  # both callers wait for the one query
            impatient.cancel()  # one of them gives up...
            await anyio.wait_all_tasks_blocked()
            release.set()  # ...and the query goes on for the other
        print("the impatient caller left; the patient one got", got)
        assert got == [({"id": "slow", "name": "user slow"}, True)]
        assert db.queries == 7, "one query for both callers"
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
