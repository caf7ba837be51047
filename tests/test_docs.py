"""Issue 14, a reference a user can read: every public class, function and method documents
each of its parameters (an ``Args:`` entry per name), and ``help()`` shows the constructors'
parameters. The API reference (`make docs`) is built from these same docstrings."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc
import re
from collections.abc import Callable, Iterator

import pytest

import graphsend
import graphsend.testing
from graphsend.integrations import pytest_plugin


def public_objects() -> Iterator[tuple[str, object]]:
    for module in (graphsend, graphsend.testing):
        for name in module.__all__:
            if name != "__version__":
                yield f"{module.__name__}.{name}", getattr(module, name)
    yield "graphsend.TimeoutError", graphsend.TimeoutError
    for name in pytest_plugin.__all__:
        fixture = getattr(pytest_plugin, name)
        yield f"pytest_plugin.{name}", getattr(fixture, "__wrapped__", fixture)


# pytest's own fixture, not an argument a user passes.
NOT_ARGUMENTS = {"request"}


def callables() -> Iterator[tuple[str, Callable[..., object]]]:
    """Every public function, and every public method (``__init__`` included) of the public
    classes, defined in graphsend itself."""
    for path, obj in public_objects():
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                if name == "__init__" and dataclasses.is_dataclass(obj):
                    continue  # records FakeGraph makes: the fields are in the class docstring
                if name.startswith("_") and name != "__init__":
                    continue
                function = member.fget if isinstance(member, property) else member
                if isinstance(function, (staticmethod, classmethod)):
                    function = function.__func__
                if inspect.isfunction(function):
                    yield f"{path}.{name}", function
        elif inspect.isfunction(obj):
            yield path, obj


def documented_parameters(doc: str) -> set[str]:
    """The names listed under ``Args:`` in a Google-style docstring."""
    match = re.search(r"^(\s*)Args:\n((?:\1 .*\n|\s*\n)+)", doc + "\n", re.M)
    if match is None:
        return set()
    indent = len(match.group(1)) + 4
    return {
        m.group(1)
        for m in re.finditer(rf"^ {{{indent}}}(\*{{0,2}}\w+)(?: \(.*?\))?:", match.group(2), re.M)
    }


CALLABLES = sorted(callables())


def test_i14_the_public_api_is_found() -> None:
    names = {name for name, _ in CALLABLES}
    for expected in (
        "graphsend.Client.__init__",
        "graphsend.Client.send_many",
        "graphsend.AsyncClient.send",
        "graphsend.send_message",
        "graphsend.testing.FakeGraph.fail_next",
        "graphsend.Retry.__init__",
    ):
        assert expected in names


@pytest.mark.parametrize(("name", "function"), CALLABLES, ids=[n for n, _ in CALLABLES])
def test_i14_every_parameter_is_documented(name: str, function: Callable[..., object]) -> None:
    doc = inspect.getdoc(function)
    assert doc, f"{name} has no docstring"
    parameters = [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.name not in ("self", "cls", *NOT_ARGUMENTS)
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if name.endswith(".__exit__") or not parameters:
        return
    missing = set(parameters) - documented_parameters(doc)
    assert not missing, f"{name}: no Args entry for {sorted(missing)}"


@pytest.mark.parametrize(
    "cls", [graphsend.Client, graphsend.AsyncClient, graphsend.testing.FakeGraph, graphsend.Retry]
)
def test_i14_help_shows_the_constructor_and_its_parameters(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "Initialize self" not in text
    init_parameters = list(inspect.signature(cls).parameters)
    assert init_parameters
    for parameter in init_parameters:
        assert f"{parameter}:" in text, parameter
