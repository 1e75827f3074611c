"""Mutation fuzzer over the plan loader: hostile files give exit 0 or 2, never a traceback.

Seeds are the example plans and the loader tests' fixture plan. Each case mutates one seed,
structurally (delete a key, swap a value's type between scalar, list and mapping, insert
weird strings and numbers, nest deeply, reuse values through aliases) and then as text or
bytes (duplicate or drop lines, truncate, random bytes, invalid UTF-8, a BOM, alias bombs).
In process, ``load_plan`` may only return a plan or raise PlanInvalid whose problems are
placed and printable; a few cases also run ``orchestrator validate`` as a real process.

The generator is seeded (the failing case's seed and index are in the assertion message),
so a failure reproduces exactly.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.actions import builtin_registry
from agents.plans import load_plan
from foundation.errors import PlanInvalid
from streams import loader
from tests.streams.test_loader import VALID

ROOT = Path(__file__).resolve().parent.parent.parent
SEEDS: dict[str, str] = {
    **{p.name: p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))},
    "fixture.yaml": VALID,
}
CASES_PER_SEED = 300  # x 4 seeds x (YAML or JSON): ~1,200 cases, ~15 s on one core

WEIRD_STRINGS = [
    "",
    " ",
    "a\x00b",
    "a\nb",
    "line\r\nbreak",
    "tab\there",
    "\x1b[31mred\x1b[0m",
    "evil\u202egnp.exe",
    "\u2066isolate\u2069",
    "\u200fmark",
    "zero\u200bwidth",
    "a/b",
    "../../etc/passwd",
    ".",
    "..",
    "\ufeffbom",
    "é",
    "日本",
    "🙂",
    "x" * 5000,
    "{{template}}",
    "*alias",
    "&anchor",
    "- item",
    "key: value",
    "null",
    "~",
    "yes",
    "1e999",
    "0x1f",
    "1h30m..2h",
    "..",
    "-5s",
]
WEIRD_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2**63,
    -(2**63) - 1,
    10**400,
    1e308,
    -1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    True,
    False,
    None,
]


def weird_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(WEIRD_STRINGS)
    if roll < 0.65:
        return rng.choice(WEIRD_NUMBERS)
    if roll < 0.8 or depth > 2:
        return [weird_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice([*WEIRD_STRINGS[:12], "id", "team", "steps", "with"]): weird_value(
            rng, depth + 1
        )
        for _ in range(rng.randint(0, 3))
    }


def _containers(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of ``data``, to pick a place to mutate."""
    found: list[tuple[Any, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((data, key))
            found.extend(_containers(value, (*path, key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.append((data, index))
            found.extend(_containers(value, (*path, index)))
    return found


def swap_type(value: Any, rng: random.Random) -> Any:
    """A scalar becomes a list or mapping, a list a mapping or scalar, and so on."""
    if isinstance(value, dict):
        return rng.choice([list(value.values()), list(value), rng.choice(WEIRD_NUMBERS), "x"])
    if isinstance(value, list):
        return rng.choice([{str(i): v for i, v in enumerate(value)}, value[0] if value else 5, ""])
    return rng.choice([[value], {"a": value}, {str(value): 1}, [[value]], {"a": 1}])


def mutate_data(data: Any, rng: random.Random) -> Any:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 4)):
        places = _containers(data)
        if not places:
            return weird_value(rng)
        container, key = rng.choice(places)
        action = rng.randrange(6)
        if action == 0:
            del container[key]
        elif action == 1:
            container[key] = swap_type(container[key], rng)
        elif action == 2:
            container[key] = weird_value(rng)
        elif action == 3 and isinstance(container, dict):
            container[rng.choice(WEIRD_STRINGS)] = container[key]
        elif action == 3:
            container.insert(key, weird_value(rng))
        elif action == 4:  # deep nesting
            value: Any = container[key]
            for _ in range(rng.choice([10, 70, 200])):
                value = [value] if rng.random() < 0.5 else {"n": value}
            container[key] = value
        else:  # a name made of hostile characters
            container[key] = rng.choice(WEIRD_STRINGS[2:16])
    return data


def _dump_yaml(data: Any, rng: random.Random) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=rng.random() < 0.5, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        return repr(data)


def _dump_json(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False)
    except (ValueError, RecursionError):
        return repr(data)


ALIAS_TEXTS = [
    "x: &x [*x]\n",
    "base: &b {a: 1}\nm: {<<: *b, b: 2}\nr: &r {<<: *r}\n",
    "".join(
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" if i else "l0: &l0 [lol, lol]\n"
        for i in range(10)
    ),
    "a: &a !!set {x: *a}\n",
    "a: &a !!omap [{x: 1}, {y: *a}]\n",
]


def mutate_text(text: str, rng: random.Random) -> bytes:
    """A textual or byte-level mutation of a plan's text."""
    lines = text.splitlines(keepends=True)
    action = rng.randrange(10)
    if action == 0 and lines:  # a duplicated line: duplicate keys
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif action == 1 and lines:  # a dropped line
        del lines[rng.randrange(len(lines))]
    elif action == 2:  # truncation
        return text.encode()[: rng.randrange(len(text) + 1)]
    elif action == 3:  # random bytes spliced in
        spliced = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            spliced.insert(rng.randrange(len(spliced) + 1), rng.randrange(256))
        return bytes(spliced)
    elif action == 4:  # invalid UTF-8
        raw = text.encode()
        cut = rng.randrange(len(raw) + 1)
        return raw[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9t\xe9"]) + raw[cut:]
    elif action == 5:  # a BOM, or two
        return rng.choice([b"\xef\xbb\xbf", b"\xef\xbb\xbf" * 2, b"\xff\xfe"]) + text.encode()
    elif action == 6:  # aliases, appended or replacing the file
        extra = rng.choice(ALIAS_TEXTS)
        return (extra if rng.random() < 0.3 else text + extra).encode()
    elif action == 8 and ": " in text:  # a YAML tag, or a bare date, on some value
        tag = rng.choice(["!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set "])
        places = [i for i in range(len(text)) if text.startswith(": ", i)]
        i = rng.choice(places) + 2
        value = tag if rng.random() < 0.7 else rng.choice(["2020-99-99 #", "0x_ #", "1:2:x #"])
        return (text[:i] + value + text[i:]).encode()
    elif action == 7 and lines:  # indentation broken
        i = rng.randrange(len(lines))
        lines[i] = rng.choice(["  ", "\t", ""]) + lines[i].lstrip()
    else:  # a control or bidi character somewhere
        i = rng.randrange(len(text) + 1)
        hostile = rng.choice("\x00\x07\x1b\u202e\u2066\u0085\u2028\ud7ff")
        return (text[:i] + hostile + text[i:]).encode(errors="surrogatepass")
    return "".join(lines).encode()


def check_outcome(path: Path, context: str) -> str:
    """Load ``path`` in process: "valid" or "invalid"; anything else fails the test."""
    try:
        load_plan(path)
    except PlanInvalid as exc:
        assert exc.problems, context
        for problem in exc.problems:
            assert problem.reason, context
            assert problem.line >= 0 and problem.column >= 0, context
            text = f"{problem.reason} {problem.fix}"
            # Problems quote names with repr(): no raw control, bidi or line-break characters.
            assert text.isprintable(), f"{context}: unprintable message {text!r}"
        return "invalid"
    except Exception as exc:  # the contract under test: nothing else may escape
        pytest.fail(f"{context}: {type(exc).__name__}: {exc}"[:2000])
    return "valid"


def _cases(seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    cases: list[tuple[str, bytes]] = []
    for name, text in SEEDS.items():
        data = yaml.safe_load(text)
        for _ in range(CASES_PER_SEED):
            suffix = rng.choice([".yaml", ".json"])
            roll = rng.random()
            if roll < 0.6:
                mutated = mutate_data(data, rng)
                body = _dump_yaml(mutated, rng) if suffix == ".yaml" else _dump_json(mutated)
                raw = body.encode(errors="surrogatepass")
            else:
                base = text if suffix == ".yaml" else _dump_json(data)
                raw = mutate_text(base, rng)
            cases.append((f"{name}{suffix}", raw))
    return cases


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_plans_load_or_are_refused_with_placed_problems(seed: int, tmp_path: Path) -> None:
    outcomes: Counter[str] = Counter()
    for index, (name, raw) in enumerate(_cases(seed)):
        path = tmp_path / f"case{index}{Path(name).suffix}"
        path.write_bytes(raw)
        outcomes[check_outcome(path, f"seed {seed} case {index} ({name})")] += 1
    total = sum(outcomes.values())
    print(f"seed {seed}: {total} cases: {dict(outcomes)}")
    assert total == CASES_PER_SEED * len(SEEDS)
    assert outcomes["invalid"] > total // 2  # the mutations do break plans


PARAMETER_STRINGS = [
    "(",
    "[",
    "*",
    "\\",
    "${X}",
    "redis://:pw@[::1",
    "http://\x00x",
    "http://[",
    "postgres://u:p@h:99999/db",
    "://",
    "services.x.environment[",
    "a..b",
    ".*{999999999}",
    "2026-13-45T99:99",
    "-5m",
    "1e309",
]


@pytest.mark.parametrize("seed", [1])
def test_weird_parameters_of_every_action_are_placed_problems(seed: int) -> None:
    """Each built-in action's ``with:`` gets random fields holding weird values: its
    parameter model (field validators included) may only give placed problems."""
    registry = builtin_registry()
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for round_ in range(20):
        for action in registry:
            definition = registry.get(action)
            assert definition is not None
            fields = list(definition.params.model_fields)
            with_ = {
                field: rng.choice(PARAMETER_STRINGS) if rng.random() < 0.4 else weird_value(rng)
                for field in rng.sample(fields, rng.randint(1, len(fields)))
            }
            plan = {
                "plan": "p",
                "caps": {"c": None},
                "agents": {"a": {"class": "c", "can": [action]}},
                "streams": [
                    {
                        "id": "s",
                        "team": ["a"],
                        "steps": [{"id": "x", "agent": "a", "action": action, "with": with_}],
                    }
                ],
            }
            label = rng.choice(["p.json", "p.yaml"])
            text = _dump_json(plan) if label == "p.json" else _dump_yaml(plan, rng)
            context = f"seed {seed} round {round_} action {action}: {with_!r}"
            try:
                loader.load_plan_text(text, label, registry=registry)
            except PlanInvalid as exc:
                assert all(p.line >= 1 for p in exc.problems), context
                outcomes["invalid"] += 1
            except Exception as exc:  # the contract under test: nothing else may escape
                pytest.fail(f"{context}: {type(exc).__name__}: {exc}"[:2000])
            else:
                outcomes["valid"] += 1
    print(f"parameters, seed {seed}: {dict(outcomes)}")
    assert outcomes["invalid"] > 0


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


HOSTILE: dict[str, Callable[[], bytes]] = {
    "bomb.yaml": lambda: ALIAS_TEXTS[2].encode(),
    "recursive.yaml": lambda: ALIAS_TEXTS[0].encode(),
    "deep.json": lambda: b"[" * 5000 + b"]" * 5000,
    "team-map.yaml": lambda: (
        SEEDS["fixture.yaml"].replace("team: [", "team: {a: 1}\n    x: [", 1).encode()
    ),
    "latin1.yaml": lambda: "plan: caf\xe9\n".encode("latin-1"),
    "bidi-name.yaml": lambda: SEEDS["fixture.yaml"].replace("sec", "s\u202eec").encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_as_a_process_exits_2_without_a_traceback(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(HOSTILE[name]())
    done = _validate(path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{path}:" in done.stderr  # placed: file:line:column


def test_validate_as_a_process_accepts_the_seeds(tmp_path: Path) -> None:
    path = tmp_path / "fixture.yaml"
    path.write_text(SEEDS["fixture.yaml"])
    done = _validate(path)
    assert done.returncode == 0, done.stderr
