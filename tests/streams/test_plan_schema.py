"""The published plan schema tells the truth: it is the shipped file, it describes every
field, and an independent validator (jsonschema) accepts every plan the loader accepts:
the examples, the loader's fixture, imported Markdown plans and random valid plans."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings

from agents.plans import load_plan_text
from foundation.errors import PlanInvalid
from streams.markdown_import import decode_markdown, import_markdown
from streams.schema import SCHEMA_FILE, plan_schema, schema_text
from tests.streams.test_loader import VALID
from tests.streams.test_properties import plans

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MARKDOWN = [
    Path(__file__).parent / "data" / "000_ab24b73426072cb1.txt",
    *sorted((SHARED / "corpus" / "plans").glob("*.md")),
    *sorted((SHARED / "seeds").glob("*.txt")),
]

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def problems(data: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in VALIDATOR.iter_errors(data)
    ]


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "plan.schema.json is stale: regenerate it with "
        "`python -m orchestrator schema > plan.schema.json`"
    )
    printed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    assert printed.stdout == schema_text()
    jsonschema.Draft202012Validator.check_schema(plan_schema())


def test_every_field_is_described() -> None:
    document = plan_schema()
    undescribed = [
        f"{name}.{prop}"
        for name, definition in [("Plan", document), *document["$defs"].items()]
        for prop, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_and_points_at_the_shipped_schema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    load_plan_text(text, str(path))  # the loader accepts it ...
    assert problems(yaml.safe_load(text)) == []  # ... and so does the schema
    hint = re.search(r"yaml-language-server: \$schema=(\S+)", text)
    assert hint is not None, f"{path.name} has no schema hint"
    assert (path.parent / hint.group(1)).resolve() == SCHEMA_FILE


def test_the_loaders_fixture_is_valid() -> None:
    load_plan_text(VALID, "plan.yaml")
    assert problems(yaml.safe_load(VALID)) == []


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: f"{p.parent.name}/{p.name[:40]}")
def test_imported_markdown_plans_are_valid(path: Path) -> None:
    try:
        result = import_markdown(decode_markdown(path.read_bytes())[0], path.name)
    except PlanInvalid as exc:  # a document that is not a plan (seed 002, a context package)
        assert "context package" in str(exc)
        return
    assert problems(yaml.safe_load(result.yaml_text)) == []


@settings(max_examples=60, deadline=None)
@given(plans())
def test_every_random_valid_plan_is_valid(data: dict[str, Any]) -> None:
    load_plan_text(json.dumps(data), "plan.json")
    assert problems(data) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("retries: 1", 'retries: "1"'),  # the loader is strict: a string is not a number
        ("caps:", "capz: {cpu: 1}\ncaps:"),
        ("{id: x, agent: sec, action: sleep}", "{id: x, agent: sec, action: sleep, lock: [a]}"),
    ],
)
def test_what_the_loader_rejects_the_schema_rejects(old: str, new: str) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    with pytest.raises(PlanInvalid):
        load_plan_text(text, "plan.yaml")
    assert problems(yaml.safe_load(text)) != []
