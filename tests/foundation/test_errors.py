"""The exception tree drawn in foundation.errors is the real one, both ways."""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import foundation.errors
from foundation.errors import OrchestratorError

PACKAGES = ("foundation", "streams", "context_packages", "agents", "orchestrator")
# One line of the drawing: its tree prefix, the class name, then "(module)" where the class
# is defined elsewhere than foundation.errors.
_LINE = re.compile(
    r"^    (?P<prefix>(?:│   |    )*(?:├── |└── )?)(?P<name>[A-Z]\w+)"
    r"(?:\s+\((?P<module>[a-z_][\w.]*)\))?"
)


@dataclass(frozen=True)
class Node:
    name: str
    parent: str | None
    module: str


def drawn() -> set[Node]:
    """The classes of the drawing in foundation.errors' docstring."""
    doc = foundation.errors.__doc__ or ""
    lines = doc[doc.index("    OrchestratorError") :].split("\n\n")[0].splitlines()
    stack: list[tuple[str, str]] = []  # (name, module) per depth
    nodes: set[Node] = set()
    for line in lines:
        match = _LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["prefix"]) // 4
        del stack[depth:]
        parent = stack[-1] if stack else None
        module = match["module"] or (parent[1] if parent else "foundation.errors")
        nodes.add(Node(match["name"], parent[0] if parent else None, module))
        stack.append((match["name"], module))
    return nodes


def real() -> set[Node]:
    """OrchestratorError and every subclass the project's packages define."""
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    nodes: set[Node] = set()
    todo: list[type[OrchestratorError]] = [OrchestratorError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.split(".")[0] not in PACKAGES:
            continue  # a test's own subclass
        parents = [b.__name__ for b in cls.__bases__ if issubclass(b, OrchestratorError)]
        assert len(parents) <= 1, f"{cls.__name__} has two parents in the tree"
        nodes.add(Node(cls.__name__, parents[0] if parents else None, cls.__module__))
    return nodes


def test_the_drawn_tree_is_the_real_one() -> None:
    shown, actual = drawn(), real()
    assert shown - actual == set(), "drawn but not so in the code"
    assert actual - shown == set(), "in the code but not drawn so"
    assert len(shown) >= 20


def test_every_error_exits_with_a_code_of_the_one_map() -> None:
    from foundation.status import ExitCode

    for node in real():
        module = importlib.import_module(node.module)
        assert getattr(module, node.name).exit_code in set(ExitCode), node.name
