"""The built-in registry names every action at once and imports an action's module only
when one of its actions is looked up."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from agents.actions import BUILTIN_MODULES, builtin_registry
from agents.registry import ActionRegistry
from foundation.errors import UnknownAction

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("module", sorted(BUILTIN_MODULES))
def test_each_module_registers_exactly_the_actions_the_table_names(module: str) -> None:
    registry = ActionRegistry()
    importlib.import_module(f"agents.actions.{module}").register(registry)
    assert tuple(registry) == BUILTIN_MODULES[module]


def test_every_action_is_known_before_any_module_is_loaded() -> None:
    registry = builtin_registry()
    names = [name for names in BUILTIN_MODULES.values() for name in names]
    assert list(registry) == names
    assert len(registry) == len(names)
    assert "docker.restart" in registry
    assert "nope" not in registry
    with pytest.raises(UnknownAction) as caught:
        registry.get_action("nope")
    assert "docker.restart" in str(caught.value)


def test_looking_up_an_action_registers_its_whole_module_in_place() -> None:
    registry = builtin_registry()
    restart = registry.get_action("docker.restart")
    assert restart.name == "docker.restart"
    assert registry["docker.logs"].params.__name__ != ""
    names = [name for names in BUILTIN_MODULES.values() for name in names]
    assert list(registry) == names  # the order is kept
    assert {name: registry[name].name for name in registry} == {name: name for name in names}


def test_a_registered_or_promised_name_cannot_be_registered_again() -> None:
    registry = builtin_registry()
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_lazily(["sleep"], lambda r: None)
    with pytest.raises(ValueError, match="registered twice"):
        importlib.import_module("agents.actions.sleep").register(registry)


def test_a_module_that_does_not_register_what_was_promised_is_an_error() -> None:
    registry = ActionRegistry()
    registry.register_lazily(["a", "b"], lambda r: None)
    with pytest.raises(ValueError, match="promised but not registered"):
        registry.get_action("a")


def test_a_module_that_fails_to_load_is_tried_again_and_never_half_registered() -> None:
    registry = ActionRegistry()
    attempts: list[int] = []

    async def run(ctx: object, params: object) -> None:
        raise AssertionError("never run")

    def register(into: ActionRegistry) -> None:
        attempts.append(1)
        into.register("x.a", BaseModel)(run)  # type: ignore[arg-type]
        if len(attempts) == 1:
            raise ImportError("No module named 'missing_dependency'")
        into.register("x.b", BaseModel)(run)  # type: ignore[arg-type]

    registry.register_lazily(["x.a", "x.b"], register)
    with pytest.raises(ImportError, match="missing_dependency"):
        registry.get_action("x.a")
    assert list(registry) == ["x.a", "x.b"]  # still promised, nothing half-registered
    assert registry.get_action("x.b").name == "x.b"  # the second try loads the module
    assert registry["x.a"].name == "x.a" and len(attempts) == 2


def test_threads_looking_up_the_same_module_at_once_all_get_the_action() -> None:
    registry = ActionRegistry()
    entered = threading.Event()
    release = threading.Event()

    def slow_register(target: ActionRegistry) -> None:
        entered.set()
        release.wait(30)
        importlib.import_module("agents.actions.sleep").register(target)

    registry.register_lazily(["sleep"], slow_register)
    found: list[str] = []
    first = threading.Thread(target=lambda: found.append(registry["sleep"].name))
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=lambda: found.append(registry["sleep"].name))
    second.start()  # arrives while the first still registers
    release.set()
    first.join(30)
    second.join(30)
    assert found == ["sleep", "sleep"]


def test_validating_a_plan_imports_only_the_actions_it_uses(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from agents.plans import load_plan\n"
        "load_plan(sys.argv[1])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('agents.actions.'))))\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nplan: p\ncaps: {light: null}\n"
        "agents: {a: {class: light, can: [sleep, http.probe]}}\n"
        "streams:\n- id: s\n  team: [a]\n  steps:\n"
        "  - {id: one, agent: a, action: sleep, with: {seconds: 0}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    assert json.loads(done.stdout) == ["agents.actions.sleep"]
