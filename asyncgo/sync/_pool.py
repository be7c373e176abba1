"""`Pool`: a free list of reusable objects, Go's ``sync.Pool`` made deterministic."""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutine, iscoroutinefunction
from typing import Generic, TypeVar, final, overload

__all__ = ["Pool"]

T = TypeVar("T")

_ASYNC_FACTORY = (
    "sync: Pool(new) takes a sync factory; {} is async, so get() would hand out "
    "coroutines: make the objects (await) outside and put() them, or use a sync factory"
)


@final
class Pool(Generic[T]):
    """A set of interchangeable objects to reuse instead of allocating anew.

    `get` returns the object most recently `put` back (last in, first out,
    so the warmest one), or a new one made by the factory when the pool is
    empty (None with no factory, as Go's ``Get`` with no ``New`` returns nil:
    type such a pool ``Pool[X | None]``). `put` returns an object to the
    pool; beyond *max_idle* idle objects it is dropped. Objects are reused as
    they are: reset them before `put` (or after `get`).

    Unlike Go's ``sync.Pool``, which may drop idle objects at any garbage
    collection, this pool is deterministic: an object put back stays until a
    `get` takes it or `clear` drops it. Neither method waits, so both are plain
    functions; they are also safe to call from threads (``to_thread`` workers).

    Go: ``sync.Pool{New: factory}``; ``Pool()``: a zero ``sync.Pool``

    Example:
        ```python
        buffers = Pool(bytearray)      # factory: called when the pool is empty
        buf = buffers.get()
        try:
            ...
        finally:
            buf.clear()
            buffers.put(buf)
        ```
    """

    __slots__ = ("__weakref__", "_items", "_max_idle", "_new")

    @overload
    def __init__(self: Pool[T], new: Callable[[], T], *, max_idle: int | None = None) -> None: ...
    @overload
    def __init__(
        self: Pool[T | None], new: None = None, *, max_idle: int | None = None
    ) -> None: ...
    def __init__(self, new: Callable[[], T] | None = None, *, max_idle: int | None = None) -> None:
        """Make an empty pool whose `get` calls *new()* when it has nothing idle
        (returns None then, with no *new*).

        Raises:
            TypeError: *new* is not callable, or is an async function (`get`
                is sync: it would hand out coroutines).
            ValueError: *max_idle* is negative.
        """
        if new is not None and not callable(new):
            raise TypeError(f"sync: Pool(new) needs a factory callable, not {type(new).__name__}")
        if iscoroutinefunction(new):
            raise TypeError(_ASYNC_FACTORY.format(getattr(new, "__qualname__", None) or repr(new)))
        if max_idle is not None and max_idle < 0:
            raise ValueError(f"sync: Pool max_idle must not be negative, got {max_idle}")
        self._new = new
        self._max_idle = max_idle
        self._items: list[T] = []

    def __repr__(self) -> str:
        return f"<Pool idle={len(self._items)} max_idle={self._max_idle} at {id(self):#x}>"

    def __len__(self) -> int:
        """The number of idle objects in the pool."""
        return len(self._items)

    def get(self) -> T:
        """Take an idle object (the most recently put), or make one. Go: ``p.Get()``."""
        try:
            return self._items.pop()
        except IndexError:
            if self._new is None:
                return None  # type: ignore[return-value]  # (Go: nil; see the class)
            x = self._new()
        if iscoroutine(x):  # an async factory that iscoroutinefunction() does not see
            x.close()
            raise TypeError(_ASYNC_FACTORY.format(self._new))
        return x

    def put(self, x: T) -> None:
        """Return *x* to the pool (dropped if *max_idle* objects are idle; None is
        ignored, as Go's ``Put(nil)`` is). Go: ``p.Put(x)``."""
        if x is None:
            return
        if self._max_idle is None or len(self._items) < self._max_idle:
            self._items.append(x)

    def clear(self) -> None:
        """Drop every idle object (what Go's garbage collector may do at any time)."""
        self._items.clear()
