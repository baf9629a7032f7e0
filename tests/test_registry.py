"""The registry helper's contract, and the five registries built on it: an unknown name gives
``unknown <kind> '<name>'; valid names: <sorted names>`` as the registry's own exception type."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from distill.registry import Registry


class _Err(LookupError):
    pass


class _Thing:
    name = ""


def _fresh(error: type[Exception] = KeyError) -> Registry[Any]:
    reg: Registry[Any] = Registry("widget", error)
    reg.register("b", 2)
    reg.register("a", 1)
    return reg


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize(
    "action, expected",
    [
        (lambda r: r.get("a"), 1),
        (lambda r: r["b"], 2),
        (lambda r: r.names(), ["a", "b"]),  # sorted, not in registration order
        (lambda r: "a" in r, True),
        (lambda r: "z" in r, False),
        (lambda r: ["x"] in r, False),  # unhashable: simply not there
        (lambda r: list(r), ["a", "b"]),
        (lambda r: len(r), 2),
        (lambda r: r.register("c", 3), 3),  # register returns the object
    ],
    ids=["get", "getitem", "names-sorted", "contains", "not-contains", "unhashable",
         "iter", "len", "register-returns"],
)
def test_registry_lookups(action: Callable[[Registry[Any]], Any], expected: Any) -> None:
    assert action(_fresh()) == expected


@pytest.mark.parametrize(
    "error, name, exc_type, message",
    [
        (KeyError, "zz", KeyError, "unknown widget 'zz'; valid names: a, b"),
        (_Err, "zz", _Err, "unknown widget 'zz'; valid names: a, b"),
        (ValueError, "it's", ValueError, "unknown widget \"it's\"; valid names: a, b"),
        (_Err, ["x"], _Err, "unknown widget ['x']; valid names: a, b"),
    ],
    ids=["default-keyerror", "caller-class", "repr-quoting", "unhashable"],
)
def test_unknown_name_raises_the_chosen_class(error, name, exc_type, message) -> None:
    with pytest.raises(exc_type) as info:
        _fresh(error).get(name)
    assert info.value.args == (message,)


def test_default_error_is_keyerror() -> None:
    reg: Registry[int] = Registry("widget")
    assert reg.error is KeyError
    with pytest.raises(KeyError) as info:
        reg.get("x")
    assert info.value.args == ("unknown widget 'x'; valid names: ",)  # an empty registry


@pytest.mark.parametrize(
    "register",
    [
        lambda r: r.register("a", 9),
        lambda r: r.decorator("a")(type("Again", (), {})),
        lambda r: r.decorator("a", make=lambda cls: cls())(type("Again", (), {})),
    ],
    ids=["register", "decorator", "decorator-make"],
)
def test_duplicate_name_raises_and_keeps_the_first(register) -> None:
    reg = _fresh()
    with pytest.raises(ValueError) as info:
        register(reg)
    assert str(info.value) == "widget 'a' is already registered"
    assert reg.get("a") == 1 and reg.names() == ["a", "b"]


def test_duplicate_decorator_leaves_the_class_and_builds_nothing() -> None:
    reg = _fresh()
    built: list[type] = []
    cls = type("Again", (_Thing,), {})
    with pytest.raises(ValueError):
        reg.decorator("a", make=lambda c: built.append(c))(cls)
    assert cls.name == "" and built == []


@pytest.mark.parametrize(
    "make, registered",
    [(None, lambda cls, obj: obj is cls),
     (lambda cls: cls(), lambda cls, obj: type(obj) is cls)],
    ids=["class", "instance"],
)
def test_decorator_names_the_class_and_registers_it(make, registered) -> None:
    reg = _fresh()

    @reg.decorator("c", make=make)
    class C(_Thing):
        pass

    assert isinstance(C, type) and C.name == "c"  # the class comes back, named
    assert registered(C, reg.get("c")) and reg.names() == ["a", "b", "c"]


# --------------------------------------------------------------------------- the registries
def _dataset():
    from distill.data.base import DataError, UnknownDatasetError, dataset_names, get_loader

    assert issubclass(UnknownDatasetError, DataError)
    return get_loader, dataset_names(), "dataset", UnknownDatasetError


def _engine():
    from distill.generate.engines import UnknownEngineError, engine_names, get_engine_class

    return get_engine_class, engine_names(), "engine", UnknownEngineError


def _strategy():
    from distill.generate.strategies import UnknownStrategyError, get_strategy, strategy_names

    return get_strategy, strategy_names(), "strategy", UnknownStrategyError


def _student():
    from distill.train.students import UnknownStudentError, get_student, student_names

    return get_student, student_names(), "student kind", UnknownStudentError


def _isolation():
    from distill.sandbox.isolation import get_isolation, isolation_names

    return get_isolation, isolation_names(), "isolation backend", KeyError


@pytest.mark.parametrize(
    "registry, exc_type, bases",
    [
        (_dataset, "UnknownDatasetError", (KeyError,)),  # a DataError and a KeyError
        (_engine, "UnknownEngineError", (ValueError,)),
        (_strategy, "UnknownStrategyError", (ValueError,)),
        (_student, "UnknownStudentError", (KeyError,)),
        (_isolation, "KeyError", (KeyError,)),
    ],
    ids=["datasets", "engines", "strategies", "students", "isolation"],
)
def test_each_registry_gives_the_unified_message(registry, exc_type, bases) -> None:
    get, names, kind, error = registry()
    assert error.__name__ == exc_type and issubclass(error, bases)
    assert names == sorted(names) and len(names) >= 3
    with pytest.raises(error) as info:
        get("no-such-thing")
    assert type(info.value) is error
    assert info.value.args == (
        f"unknown {kind} 'no-such-thing'; valid names: {', '.join(names)}",)


@pytest.mark.parametrize(
    "error_name, module",
    [("UnknownDatasetError", "distill.data.base"),
     ("UnknownStudentError", "distill.train.students")],
)
def test_keyerror_subclasses_print_their_message_unquoted(error_name, module) -> None:
    import importlib

    error = getattr(importlib.import_module(module), error_name)
    assert str(error("unknown x 'y'; valid names: a")) == "unknown x 'y'; valid names: a"
