"""Claude Code agent definitions read into agent ids, display names, tools and models."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.agent_definitions import (
    AgentDefinition,
    DefinitionProblem,
    agent_id,
    parse_definition,
    read_definitions,
)

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "agents"


def test_display_names_map_to_plan_ids() -> None:
    assert agent_id("Security Scanner") == "security-scanner"
    assert agent_id("backend-gateway-expert") == "backend-gateway-expert"
    assert agent_id("  Test   Generator ") == "test-generator"
    assert agent_id("!!!") == ""


@pytest.mark.parametrize(
    ("tools_line", "tools"),
    [
        ("tools: Read, Glob, Grep", ("Read", "Glob", "Grep")),
        ("tools: [Read, Glob]", ("Read", "Glob")),
        ("tools:\n  - Bash\n  - Edit", ("Bash", "Edit")),
        ("", ()),
    ],
)
def test_tools_as_comma_list_or_yaml_list(tools_line: str, tools: tuple[str, ...]) -> None:
    text = f"---\nname: Security Scanner\ndescription: Finds holes\n{tools_line}\n---\n# Body\n"
    found = parse_definition(text, "x.md")
    assert isinstance(found, AgentDefinition)
    assert (found.id, found.name, found.description) == (
        "security-scanner",
        "Security Scanner",
        "Finds holes",
    )
    assert found.tools == tools
    assert found.instructions == "# Body"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("# no front matter\n", "no YAML front matter"),
        ("---\nname: [unclosed\n---\n", "not valid YAML"),
        ("---\n- a list\n---\n", "not a mapping"),
        ("---\ndescription: no name\n---\n", "name"),
        ("---\nname: '***'\n---\n", "no letters or digits"),
    ],
)
def test_broken_definitions_say_why_and_how_to_fix(text: str, reason: str) -> None:
    found = parse_definition(text, "bad.md")
    assert isinstance(found, DefinitionProblem)
    assert reason in found.reason
    assert found.fix
    assert str(found).startswith("bad.md: ")


def test_a_folder_of_definitions_with_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\nname: Alpha One\nmodel: opus\n---\nDo alpha.\n")
    (tmp_path / "b.md").write_text("---\nname: alpha-one\n---\n")
    (tmp_path / "c.md").write_text("not a definition\n")
    (tmp_path / "notes.txt").write_text("---\nname: ignored\n---\n")
    found, problems = read_definitions(tmp_path)
    assert list(found) == ["alpha-one"]
    assert found["alpha-one"].model == "opus"
    assert sorted(Path(p.path).name for p in problems) == ["b.md", "c.md"]
    assert read_definitions(tmp_path / "missing") == ({}, [])


def test_corpus_definitions() -> None:
    found, problems = read_definitions(CORPUS)
    assert problems == []
    ids = set(found)
    assert {
        "security-scanner",
        "test-generator",
        "backend-gateway-expert",
        "monitoring-analyst",
        "performance-profiler",
        "schema-database-expert",
        "security-validator",
    } == ids
    scanner = found["security-scanner"]
    assert scanner.name == "Security Scanner"
    assert scanner.tools == ("Read", "Glob", "Grep")
    assert scanner.model == "haiku-4.5"
    assert found["monitoring-analyst"].tools == ()
    assert found["monitoring-analyst"].description.startswith("Specialized agent")
