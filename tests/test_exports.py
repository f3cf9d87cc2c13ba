"""The public API surface: what ``flowgen`` exports, and how (httpx/trio style)."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import typing
from pathlib import Path

import attrs
import pytest

import flowgen as fg
from flowgen._vocabulary.commands import COMMAND_KINDS
from flowgen._vocabulary.events import EVENT_TAGS

PACKAGE = Path(fg.__file__).parent

# A private module whose __all__ is re-exported whole says so with this comment.
REEXPORT_MARKER = (
    "# Everything in __all__ gets re-exported as part of the flowgen public API."
)


def private_modules() -> list[str]:
    """Every module below a private name (``flowgen._core.dsl``, ``flowgen._x``)."""
    return sorted(
        m.name
        for m in pkgutil.walk_packages([str(PACKAGE)], prefix="flowgen.")
        if not m.ispkg
        and any(part.startswith("_") for part in m.name.split(".")[1:])
        and not m.name.endswith("__main__")
    )


def module_path(name: str) -> Path:
    return PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")


def reexported_modules() -> list[str]:
    return [
        name
        for name in private_modules()
        if REEXPORT_MARKER in module_path(name).read_text()
    ]


def test_all_is_sorted() -> None:
    assert fg.__all__ == sorted(fg.__all__)


def test_all_has_no_duplicates_and_every_name_exists() -> None:
    assert len(fg.__all__) == len(set(fg.__all__))
    for name in fg.__all__:
        assert hasattr(fg, name), name


def test_reexporting_modules_include_the_core() -> None:
    assert {
        "flowgen._vocabulary.commands",
        "flowgen._core.dsl",
        "flowgen._vocabulary.errors",
        "flowgen._vocabulary.events",
        "flowgen._core.interpreter",
        "flowgen._runtime.stepper",
    } <= set(reexported_modules())


@pytest.mark.parametrize("module_name", reexported_modules())
def test_all_is_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = sorted(set(module.__all__) - set(fg.__all__))
    assert not missing, (
        f"{module_name}.__all__ names not exported by flowgen: {missing}"
    )
    for name in module.__all__:
        assert getattr(fg, name) is getattr(module, name), name


def test_every_public_name_of_the_package_is_in_all() -> None:
    public = {
        name
        for name, value in vars(fg).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(fg.__all__) | {"annotations"}


@pytest.mark.parametrize("name", fg.__all__)
def test_exported_classes_and_functions_live_in_flowgen(name: str) -> None:
    value = getattr(fg, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__ == "flowgen", name


def _attribute_docstrings() -> dict[str, str]:
    """``NAME = value`` followed by a string literal, in the private modules."""
    found: dict[str, str] = {}
    for path in map(module_path, private_modules()):
        body = ast.parse(path.read_text()).body
        for statement, following in itertools.pairwise(body):
            targets = (
                statement.targets
                if isinstance(statement, ast.Assign)
                else [statement.target]
                if isinstance(statement, ast.AnnAssign)
                else []
            )
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                for target in targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = following.value.value
    return found


@pytest.mark.parametrize("name", [n for n in fg.__all__ if not n.startswith("__")])
def test_every_exported_name_is_documented(name: str) -> None:
    value = getattr(fg, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert inspect.getdoc(value), f"flowgen.{name} has no docstring"
    else:  # constants and type aliases: a string literal right after the assignment
        assert _attribute_docstrings().get(name), f"flowgen.{name} has no docstring"


def test_the_public_classes_document_their_public_methods() -> None:
    undocumented = [
        f"{cls_name}.{attr}"
        for cls_name in fg.__all__
        if inspect.isclass(cls := getattr(fg, cls_name))
        and not issubclass(cls, BaseException)
        for attr, member in vars(cls).items()
        if not attr.startswith("_")
        and (inspect.isfunction(member) or isinstance(member, (property, classmethod)))
        and not inspect.getdoc(
            member.__func__ if isinstance(member, classmethod) else member
        )
    ]
    assert not undocumented


COMMAND_CLASSES = sorted(COMMAND_KINDS, key=lambda cls: cls.__name__)
EVENT_CLASSES = sorted(EVENT_TAGS, key=lambda cls: cls.__name__)


@pytest.mark.parametrize(
    "cls", COMMAND_CLASSES + EVENT_CLASSES, ids=lambda c: c.__name__
)
def test_command_and_event_classes_are_frozen_attrs_classes(cls: type) -> None:
    assert attrs.has(cls)
    instance = _any_instance(cls)
    field = attrs.fields(cls)[0] if attrs.fields(cls) else None
    if field is not None:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(instance, field.name, getattr(instance, field.name))
    with pytest.raises((AttributeError, attrs.exceptions.FrozenInstanceError)):
        instance.something_new = 1  # type: ignore[attr-defined]  # slots and frozen


def test_the_command_and_event_unions_are_closed_over_the_exported_classes() -> None:
    assert set(typing.get_args(fg.Event)) == set(EVENT_TAGS)
    commands = {typing.get_origin(c) or c for c in typing.get_args(fg.Command)}
    assert commands == set(COMMAND_KINDS)
    for cls in (*COMMAND_KINDS, *EVENT_TAGS):
        assert getattr(fg, cls.__name__) is cls


def _any_instance(cls: type) -> object:
    """An instance built from simple values for each required field."""
    from datetime import UTC, datetime

    samples: dict[str, object] = {
        "at": datetime(2031, 3, 7, tzinfo=UTC),
        "retry_at": datetime(2031, 3, 7, tzinfo=UTC),
        "fire_at": datetime(2031, 3, 7, tzinfo=UTC),
        "seq": 0,
        "attempt": 1,
        "index": 0,
        "error": fg.ErrorInfo("E", "m"),
        "fn": lambda: None,
        "handler": lambda: None,
        "predicate": lambda: True,
        "commands": (fg.StartTimer(1.0),),
        "seconds": 1.0,
        "min_supported": 0,
        "max_supported": 1,
        "tags": {},
        "version": 1,
    }
    kwargs = {}
    for field in attrs.fields(cls):
        if field.default is attrs.NOTHING:
            kwargs[field.name] = samples.get(field.name, "x")
    return cls(**kwargs)
