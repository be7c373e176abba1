"""The public surface: `__all__` sorted and complete, `__module__` fixed, all documented."""

from __future__ import annotations
import __future__

import inspect
import pickle
import types
import typing

import pytest

import asyncgo
from asyncgo import Chan, ChanClosed, Selected, WouldBlock

PUBLIC = sorted(asyncgo.__all__)


def _public_members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties that asyncgo itself defines on *cls* (and its bases)."""
    found: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if not (klass.__module__ or "").startswith("asyncgo"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                found[name] = member
    return sorted(found.items())


def test_all_is_sorted() -> None:
    assert asyncgo.__all__ == sorted(asyncgo.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(asyncgo.__all__)) == len(asyncgo.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_name_in_all_exists(name: str) -> None:
    assert hasattr(asyncgo, name), f"asyncgo.__all__ names {name!r}, which does not exist"


def test_all_is_complete() -> None:
    """Every public, non-module name of the package namespace is in ``__all__``."""
    missing = [
        name
        for name, obj in vars(asyncgo).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and not isinstance(obj, __future__._Feature)  # `from __future__ import annotations`
        and name not in asyncgo.__all__
    ]
    assert missing == []


def test_contract_names_are_exported() -> None:
    contract = {
        "Chan", "SendChan", "RecvChan", "ChanClosed", "WouldBlock",
        "select", "recv", "send", "Selected",
    }  # fmt: skip
    assert contract <= set(asyncgo.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_module_is_asyncgo(name: str) -> None:
    obj = getattr(asyncgo, name)
    if not hasattr(obj, "__module__"):
        pytest.skip(f"{name} is not a class or function")
    assert obj.__module__ == "asyncgo", f"asyncgo.{name}.__module__ == {obj.__module__!r}"


@pytest.mark.parametrize("name", PUBLIC)
def test_exported_object_has_a_docstring(name: str) -> None:
    obj = getattr(asyncgo, name)
    assert inspect.getdoc(obj), f"asyncgo.{name} has no docstring"
    # not just the docstring inherited from a builtin base
    if isinstance(obj, type):
        assert "__doc__" in vars(obj) and vars(obj)["__doc__"], (
            f"asyncgo.{name} has no own docstring"
        )


@pytest.mark.parametrize("name", [n for n in PUBLIC if isinstance(getattr(asyncgo, n), type)])
def test_public_methods_have_docstrings(name: str) -> None:
    cls = getattr(asyncgo, name)
    undocumented = [
        f"{name}.{attr}" for attr, member in _public_members(cls) if not inspect.getdoc(member)
    ]
    assert undocumented == []


def test_views_document_their_public_members() -> None:
    """The objects send_only()/recv_only() hand out read well in help() too."""
    ch = Chan[int]()
    for view in (ch.send_only(), ch.recv_only()):
        for attr in ("cap", "closed"):
            assert inspect.getdoc(getattr(type(view), attr)), f"{type(view).__name__}.{attr}"
        for attr in dir(view):
            if not attr.startswith("_"):
                assert inspect.getdoc(getattr(view, attr)), f"{type(view).__name__}.{attr}"


def test_version_is_a_string() -> None:
    assert isinstance(asyncgo.__version__, str) and asyncgo.__version__


@pytest.mark.parametrize(
    "obj",
    [ChanClosed("send on closed channel"), WouldBlock("x"), Selected(1, "v", True)],
    ids=repr,
)
def test_public_values_pickle_under_the_public_module(obj: object) -> None:
    data = pickle.dumps(obj)
    assert b"asyncgo._" not in data
    again = pickle.loads(data)
    assert type(again) is type(obj)
    assert repr(again) == repr(obj)


def _every_public_exception() -> list[BaseException]:
    from asyncgo.contrib import ClientDisconnected

    made: list[BaseException] = [
        asyncgo.ChanClosed("send on closed channel"),
        asyncgo.WouldBlock(),
        asyncgo.Canceled("why"),
        asyncgo.DeadlineExceeded(),
        asyncgo.Deadlock("who waits on what"),
        asyncgo.WrongDirection("send case on a receive-only channel"),
        asyncgo.PoolClosed("submit to a closed WorkerPool"),
        asyncgo.JobCancelled("job cancelled"),
        asyncgo.Disconnected("subscriber fell behind"),
        asyncgo.CircuitOpen("payments", 12.5),
        asyncgo.CircuitOpen("payments", 0),
        ClientDisconnected(),
        asyncgo.testing.TaskLeakError("found 1 unexpected task", []),
    ]
    # Every exception class asyncgo exports is in the list above.
    exported = {
        obj
        for mod in _MODULES
        for obj in vars(mod).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith("asyncgo")
    }
    assert exported <= {type(e) for e in made}, exported - {type(e) for e in made}
    return made


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_every_exception_survives_pickle_and_copy(how: str) -> None:
    """A job in a process pool raises its error in the parent through pickle; two
    exceptions with required arguments beyond the message could not be rebuilt."""
    import copy

    for exc in _every_public_exception():
        exc.add_note("a note")
        if how == "pickle":
            again = pickle.loads(pickle.dumps(exc))
        else:
            again = getattr(copy, how)(exc)
        assert type(again) is type(exc)
        assert str(again) == str(exc)
        assert again.__notes__ == ["a note"]
        for name in ("name", "retry_after"):
            if hasattr(exc, name):
                assert getattr(again, name) == getattr(exc, name)


def test_reprs_name_the_public_class() -> None:
    assert repr(Selected(0, None, False)) == "Selected(index=0, value=None, ok=False)"
    assert "asyncgo.ChanClosed" in repr(ChanClosed) or repr(ChanClosed) == (
        "<class 'asyncgo.ChanClosed'>"
    )


_MODULES = [
    asyncgo, asyncgo.sync, asyncgo.rate, asyncgo.singleflight, asyncgo.time,
    asyncgo.stages, asyncgo.debug, asyncgo.testing, asyncgo.resilience,
]  # fmt: skip


_DUNDERS = ("__init__", "__call__", "__aenter__", "__aexit__")


def _annotated() -> list[tuple[str, object]]:
    """Every public function, class and public method (with its dunder protocol methods)."""
    found: dict[int, tuple[str, object]] = {}
    for mod in _MODULES:
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            found.setdefault(id(obj), (f"{mod.__name__}.{name}", obj))
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member) and (
                        not attr.startswith("_") or attr in _DUNDERS
                    ):
                        found.setdefault(id(member), (f"{mod.__name__}.{name}.{attr}", member))
    return sorted(found.values(), key=lambda x: x[0])


@pytest.mark.parametrize(
    ("name", "obj"), _annotated(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_type_hints_resolve_at_run_time(name: str, obj: object) -> None:
    # typing.get_type_hints() is what runtime tools (FastAPI, pydantic, typeguard,
    # sphinx) call: no annotation may name something only type checkers import.
    assert isinstance(typing.get_type_hints(obj), dict)
