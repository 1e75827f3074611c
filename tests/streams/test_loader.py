"""Loading and validating plan files: every problem is reported at its file, line and column.

Expected positions are computed from each test's own text (the place of the offending token),
so a test shows what a user would be pointed at.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from agents.plans import load_plan, load_plan_text
from foundation.errors import PlanInvalid, PlanProblem

VALID = textwrap.dedent("""\
    version: 1
    plan: demo
    title: A small plan
    caps: {cpu: 2, io: 1, light: null}
    resources: [redis, database]
    defaults: {timeout: 5m, retries: 1}
    agents:
      sec: {class: io, can: [command, sleep]}
      perf: {class: cpu, can: [command, sleep]}
    streams:
      - id: a
        priority: high
        team: [sec, perf]
        timeline: 15m..30m
        evidence: [{id: report}]
        steps:
          - {id: s1, agent: sec, action: sleep, with: {seconds: 250ms}, locks: [redis]}
          - {id: s2, agent: perf, action: command, with: {argv: [echo, hi]}, evidence: [report]}
      - id: b
        team: [sec]
        depends_on: [a]
        steps:
          - {id: x, agent: sec, action: sleep}
""")


def edit(text: str, old: str, new: str) -> str:
    """``text`` with the single occurrence of ``old`` replaced (fails loudly if not single)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def locate(text: str, needle: str, *, after: str = "", nth: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the ``nth`` ``needle`` that follows the first ``after``."""
    index = text.index(after) + len(after) - 1 if after else -1
    for _ in range(nth):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def problems(text: str, label: str = "plan.yaml") -> tuple[PlanProblem, ...]:
    with pytest.raises(PlanInvalid) as info:
        load_plan_text(text, label)
    assert all(p.path == label for p in info.value.problems)
    return info.value.problems


def only(text: str, label: str = "plan.yaml") -> PlanProblem:
    found = problems(text, label)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def place(problem: PlanProblem) -> tuple[int, int]:
    return problem.line, problem.column


# --- valid plans ------------------------------------------------------------------------


def test_valid_plan_loads_with_durations_in_seconds() -> None:
    plan, pos = load_plan_text(VALID, "plan.yaml")
    assert plan.plan == "demo"
    assert plan.caps == {"cpu": 2, "io": 1, "light": None}
    assert plan.defaults.timeout == 300.0
    assert plan.agent_class("perf") == "cpu"
    a, b = plan.streams
    assert a.timeline is not None
    assert (a.timeline.expected_s, a.timeline.limit_s) == (900.0, 1800.0)
    assert a.steps[0].with_ == {"seconds": "250ms"}
    assert b.depends_on == ["a"]
    assert plan.total_steps() == 3
    assert pos.at(("streams", 1, "steps", 0, "agent")) == locate(
        VALID, "sec", after="id: x, agent: "
    )


def test_yaml_and_json_forms_load_to_equal_models(tmp_path: Path) -> None:
    as_yaml = tmp_path / "plan.yaml"
    as_json = tmp_path / "plan.json"
    as_yaml.write_text(VALID, encoding="utf-8")
    as_json.write_text(json.dumps(yaml.safe_load(VALID), indent=2), encoding="utf-8")
    assert load_plan(as_yaml) == load_plan(as_json)


def test_yaml_merge_keys_are_accepted_and_written_keys_override_them() -> None:
    text = edit(
        VALID,
        "  sec: {class: io, can: [command, sleep]}\n",
        "  sec: &base {class: io, can: [command, sleep]}\n",
    )
    text = edit(
        text, "  perf: {class: cpu, can: [command, sleep]}", "  perf: {<<: *base, class: cpu}"
    )
    plan, _ = load_plan_text(text, "plan.yaml")
    assert plan.agents["perf"].resource_class == "cpu"
    assert plan.agents["perf"].can == ["command", "sleep"]


def test_a_key_written_twice_next_to_a_merge_is_still_a_duplicate() -> None:
    text = edit(
        VALID,
        "  sec: {class: io, can: [command, sleep]}\n",
        "  sec: &base {class: io, can: [command, sleep]}\n",
    )
    text = edit(
        text,
        "  perf: {class: cpu, can: [command, sleep]}",
        "  perf: {<<: *base, class: cpu, class: io}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "class", after="class: cpu, ")
    assert problem.reason == "duplicate key 'class'"


# --- malformed files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle", "after", "says"),
    [
        ("plan: demo\n  caps: 1\n", ":", "  caps", "mapping values are not allowed"),
        ("plan: demo\ncaps:\n\tcpu: 1\n", "\t", "", "cannot start any token"),
        ("plan: demo\nagents: {a: b: c}\n", ":", "{a: b", "expected ',' or '}'"),
        ("plan: demo\n- x\n", "-", "", "did not find expected key"),
        ("plan: *nope\n", "*", "", "undefined alias"),
        ("plan: demo\n---\nplan: x\n", "---", "", "another document"),
    ],
    ids=["indentation", "tab", "flow-mapping", "list-in-mapping", "alias", "two-documents"],
)
def test_malformed_yaml_is_reported_where_the_parser_stopped(
    text: str, needle: str, after: str, says: str
) -> None:
    problem = only(text)
    assert place(problem) == locate(text, needle, after=after)
    assert problem.reason.startswith("malformed YAML: ")
    assert says in problem.reason
    assert problem.fix


def test_unclosed_quote_is_reported_at_the_end_of_the_file() -> None:
    text = 'plan: demo\ntitle: "abc\n'
    problem = only(text)
    assert place(problem) == (text.count("\n") + 1, 1)
    assert "end of stream" in problem.reason


def test_a_forbidden_control_character_is_located() -> None:
    text = "plan: demo\ntitle: ü\x07\n"
    problem = only(text)
    assert place(problem) == locate(text, "\x07")
    assert "#x0007" in problem.reason
    assert problem.fix


@pytest.mark.parametrize(
    "text", ["", "\n", "# only a comment\n"], ids=["empty", "blank", "comment"]
)
def test_an_empty_file_is_not_a_plan(text: str) -> None:
    problem = only(text)
    assert place(problem) == (1, 1)
    assert "must be a mapping" in problem.reason
    assert "examples/" in problem.fix


@pytest.mark.parametrize(
    "text", ["- a\n- b\n", "just words\n", "42\n"], ids=["list", "string", "number"]
)
def test_a_plan_that_is_not_a_mapping_is_rejected(text: str) -> None:
    problem = only(text)
    assert place(problem) == (1, 1)
    assert problem.reason == "a plan file must be a mapping of keys to values"
    assert problem.fix


def test_duplicate_yaml_keys_are_reported_at_the_second_key() -> None:
    text = edit(VALID, "plan: demo\n", "plan: demo\nplan: other\n")
    problem = only(text)
    assert place(problem) == locate(text, "plan", after="plan: demo\n")
    assert problem.reason == "duplicate key 'plan'"
    assert problem.fix


def test_an_agent_defined_twice_is_a_duplicate_key() -> None:
    text = edit(
        VALID, "  perf: {class: cpu", "  sec: {class: cpu, can: [sleep]}\n  perf: {class: cpu"
    )
    problem = only(text)
    assert place(problem) == locate(text, "sec: {class: cpu")
    assert problem.reason == "duplicate key 'sec'"


# --- unknown keys, missing keys, wrong types --------------------------------------------


def test_unknown_top_level_key_lists_the_allowed_ones() -> None:
    text = VALID + "extra: 1\n"
    problem = only(text)
    assert place(problem) == locate(text, "extra")
    assert problem.reason == "unknown key 'extra'"
    assert "remove it" in problem.fix
    assert "Allowed keys here: agents, agents_from, caps" in problem.fix


def test_unknown_step_key_suggests_the_close_match() -> None:
    text = edit(VALID, "locks: [redis]", "lock: [redis]")
    problem = only(text)
    assert place(problem) == locate(text, "lock:")
    assert problem.reason == "unknown key 'lock'"
    assert problem.fix.startswith("did you mean 'locks'?")
    assert "needs" in problem.fix


def test_unknown_agent_key_is_reported_at_the_key() -> None:
    text = edit(
        VALID,
        "{class: cpu, can: [command, sleep]}",
        "{class: cpu, can: [command, sleep], rol: tuning}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "rol:")
    assert problem.fix.startswith("did you mean 'role'?")


def test_missing_top_level_key_is_reported_at_the_start() -> None:
    text = edit(VALID, "plan: demo\n", "")
    problem = only(text)
    assert place(problem) == (1, 1)
    assert problem.reason == "missing required key 'plan'"
    assert problem.fix == "add it"


def test_missing_stream_team_is_reported_at_its_stream() -> None:
    text = edit(VALID, "    team: [sec]\n", "")
    problem = only(text)
    assert place(problem) == locate(text, "id: b")
    assert problem.reason == "missing required key 'streams.1.team'"
    assert problem.fix


def test_missing_step_agent_is_reported_at_its_step() -> None:
    text = edit(VALID, "{id: x, agent: sec, action: sleep}", "{id: x, action: sleep}")
    problem = only(text)
    assert place(problem) == locate(text, "{id: x")
    assert problem.reason == "missing required key 'streams.1.steps.0.agent'"


@pytest.mark.parametrize(
    ("old", "new", "needle", "where", "says"),
    [
        (
            "{id: x, agent: sec, action: sleep}",
            "{id: x, agent: sec, action: sleep, retries: many}",
            "many",
            "streams.1.steps.0.retries",
            "valid integer",
        ),
        ("caps: {cpu: 2,", "caps: {cpu: two,", "two", "caps.cpu", "valid integer"),
        ("    team: [sec]\n", "    team: sec\n", "sec\n", "streams.1.team", "valid list"),
        ("priority: high", "priority: urgent", "urgent", "streams.0.priority", "'critical'"),
        ("version: 1", "version: 2", "2", "version", "1"),
        ("plan: demo", "plan: [demo]", "[demo]", "plan", "valid string"),
    ],
    ids=["retries", "cap", "team", "priority", "version", "plan-name"],
)
def test_wrong_types_name_the_path_and_point_at_the_value(
    old: str, new: str, needle: str, where: str, says: str
) -> None:
    text = edit(VALID, old, new)
    problem = only(text)
    assert place(problem) == locate(text, needle, after=new[: new.index(needle)])
    assert problem.reason.startswith(f"{where}: ")
    assert says in problem.reason


def test_agents_written_as_a_list_is_a_wrong_type() -> None:
    text = edit(
        VALID,
        "  sec: {class: io, can: [command, sleep]}\n  perf: {class: cpu, can: [command, sleep]}\n",
        "  - sec\n",
    )
    problem = only(text)
    assert place(problem) == locate(text, "- sec")
    assert problem.reason.startswith("agents: ")


def test_a_bad_identifier_is_rejected_with_the_rule() -> None:
    text = edit(VALID, "id: b", "id: 'b c'")
    problem = only(text)
    assert place(problem) == locate(text, "'b c'")
    assert problem.reason.startswith("streams.1.id: String should match pattern")


def test_columns_count_characters_not_bytes() -> None:
    text = edit(
        VALID,
        "{class: cpu, can: [command, sleep]}",
        "{class: cpu, role: naïve 日本語 ✓, can: [command, sleep], bogus: 1}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "bogus")
    assert problem.reason == "unknown key 'bogus'"


# --- cross references ------------------------------------------------------------------


def test_unknown_resource_class_suggests_a_known_one() -> None:
    text = edit(VALID, "{class: io,", "{class: iox,")
    problem = only(text)
    assert place(problem) == locate(text, "iox")
    assert problem.reason == "agent 'sec': unknown resource class 'iox'"
    assert problem.fix.startswith("did you mean 'io'?")
    assert "cpu, io, light" in problem.fix


def test_unknown_agent_in_a_team() -> None:
    text = edit(VALID, "team: [sec, perf]", "team: [sec, perf, nobody]")
    problem = only(text)
    assert place(problem) == locate(text, "nobody")
    assert problem.reason == "stream 'a': unknown agent 'nobody'"
    assert "known: perf, sec" in problem.fix


def test_unknown_agent_in_a_step() -> None:
    text = edit(VALID, "{id: x, agent: sec,", "{id: x, agent: secc,")
    problem = only(text)
    assert place(problem) == locate(text, "secc")
    assert problem.reason == "step 'x': unknown agent 'secc'"
    assert problem.fix.startswith("did you mean 'sec'?")


def test_agent_outside_the_streams_team() -> None:
    text = edit(VALID, "{id: x, agent: sec,", "{id: x, agent: perf,")
    problem = only(text)
    assert place(problem) == locate(text, "perf", after="{id: x, agent: ")
    assert problem.reason == "step 'x': agent 'perf' is not in stream 'b''s team"
    assert "add it to the team (sec)" in problem.fix


def test_action_outside_the_agents_can_list() -> None:
    text = edit(VALID, "sec: {class: io, can: [command, sleep]}", "sec: {class: io, can: [sleep]}")
    text = edit(
        text,
        "{id: x, agent: sec, action: sleep}",
        "{id: x, agent: sec, action: command, with: {argv: [ls]}}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "command", after="{id: x, agent: sec, action: ")
    assert (
        problem.reason == "step 'x': action 'command' is outside agent 'sec''s scope (can: sleep)"
    )
    assert "can list" in problem.fix


def test_undo_action_outside_the_agents_can_list() -> None:
    text = edit(VALID, "sec: {class: io, can: [command, sleep]}", "sec: {class: io, can: [sleep]}")
    text = edit(
        text,
        "{id: x, agent: sec, action: sleep}",
        "{id: x, agent: sec, action: sleep, undo: {action: command}}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "command", after="undo: {action: ")
    assert "outside agent 'sec''s scope" in problem.reason


def test_unknown_action_in_a_can_list() -> None:
    text = edit(VALID, "  perf:", "  ops: {class: io, can: [command, slep]}\n  perf:")
    problem = only(text)
    assert place(problem) == locate(text, "slep")
    assert problem.reason == "agent 'ops': unknown action 'slep'"
    assert problem.fix.startswith("did you mean 'sleep'?")


def test_unknown_resource_in_locks() -> None:
    text = edit(VALID, "locks: [redis]", "locks: [redis, cache]")
    problem = only(text)
    assert place(problem) == locate(text, "cache")
    assert problem.reason == "step 's1': unknown resource 'cache'"
    assert "database, redis" in problem.fix


def test_unknown_evidence_id() -> None:
    text = edit(VALID, "evidence: [report]}", "evidence: [reprot]}")
    problem = only(text)
    assert place(problem) == locate(text, "reprot")
    assert problem.reason == "step 's2': unknown evidence 'reprot'"
    assert "did you mean 'report'?" in problem.fix


def test_unknown_step_in_needs() -> None:
    text = edit(
        VALID,
        "{id: x, agent: sec, action: sleep}",
        "{id: x, agent: sec, action: sleep, needs: [s1]}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "s1", after="needs: [")
    assert problem.reason == "step 'x' needs unknown step 's1'"
    assert "known: x" in problem.fix


def test_unknown_stream_in_depends_on() -> None:
    text = edit(VALID, "depends_on: [a]", "depends_on: [a, c]")
    problem = only(text)
    assert place(problem) == locate(text, "c", after="depends_on: [a, ")
    assert problem.reason == "stream 'b': depends on unknown stream 'c'"


def test_a_step_that_needs_itself_is_reported_once() -> None:
    text = edit(
        VALID,
        "{id: x, agent: sec, action: sleep}",
        "{id: x, agent: sec, action: sleep, needs: [x]}",
    )
    problem = only(text)
    assert place(problem) == locate(text, "x", after="needs: [")
    assert problem.reason == "step 'x' needs itself"
    assert problem.fix


def test_a_stream_that_depends_on_itself_is_reported_once() -> None:
    text = edit(VALID, "depends_on: [a]", "depends_on: [a, b]")
    problem = only(text)
    assert place(problem) == locate(text, "b]")
    assert problem.reason == "stream 'b' depends on itself"


def test_a_cycle_in_depends_on_is_printed_and_located_on_an_edge() -> None:
    text = edit(VALID, "    team: [sec, perf]\n", "    team: [sec, perf]\n    depends_on: [b]\n")
    problem = only(text)
    assert problem.reason == "dependency cycle between streams: a -> b -> a"
    assert place(problem) == locate(text, "b", after="depends_on: [")
    assert "depends_on" in problem.fix


def test_a_longer_cycle_in_depends_on() -> None:
    text = VALID + (
        "  - id: c\n"
        "    team: [sec]\n"
        "    depends_on: [b]\n"
        "    steps: [{id: y, agent: sec, action: sleep}]\n"
    )
    text = edit(text, "    team: [sec, perf]\n", "    team: [sec, perf]\n    depends_on: [c]\n")
    problem = only(text)
    assert problem.reason == "dependency cycle between streams: a -> c -> b -> a"
    assert place(problem) == locate(text, "c", after="depends_on: [")


def test_a_cycle_in_needs_through_a_default_need() -> None:
    # s2 needs s1 by default (the previous step); s1 needing s2 closes the cycle.
    text = edit(VALID, "locks: [redis]}", "locks: [redis], needs: [s2]}")
    problem = only(text)
    assert problem.reason == "stream 'a': cycle in needs: s1 -> s2 -> s1"
    assert place(problem) == locate(text, "s2", after="needs: [")
    assert problem.fix


def test_a_cycle_in_needs_is_located_on_a_written_edge() -> None:
    # The cycle s3 -> s2 -> s4 -> s3 starts on s3, whose need (s2) is the default one and
    # not written anywhere: the report points at a need the file does spell out.
    steps = (
        "    steps:\n"
        "      - {id: s1, agent: sec, action: sleep, needs: [s3]}\n"
        "      - {id: s2, agent: sec, action: sleep, needs: [s4]}\n"
        "      - {id: s3, agent: sec, action: sleep}\n"
        "      - {id: s4, agent: sec, action: sleep, needs: [s3]}\n"
    )
    text = edit(VALID, "    steps:\n      - {id: x, agent: sec, action: sleep}\n", steps)
    problem = only(text)
    assert problem.reason == "stream 'b': cycle in needs: s3 -> s2 -> s4 -> s3"
    assert place(problem) == locate(
        text, "s4", after="{id: s2, agent: sec, action: sleep, needs: ["
    )


# --- caps, duplicates --------------------------------------------------------------------


@pytest.mark.parametrize("cap", ["0", "-3"])
def test_a_cap_below_one(cap: str) -> None:
    text = edit(VALID, "caps: {cpu: 2,", f"caps: {{cpu: {cap},")
    problem = only(text)
    assert place(problem) == locate(text, cap, after="caps: {cpu: ")
    assert problem.reason == "caps.cpu: Input should be greater than or equal to 1"


def test_caps_must_name_a_class() -> None:
    text = edit(VALID, "{cpu: 2, io: 1, light: null}", "{}")
    problem = only(text)
    assert place(problem) == locate(text, "{}")
    assert "name at least one resource class" in problem.reason


def test_duplicate_stream_ids() -> None:
    text = edit(VALID, "  - id: b\n", "  - id: a\n")
    text = edit(text, "depends_on: [a]", "depends_on: []")
    problem = only(text)
    line, column = locate(text, "- id: a", nth=2)
    assert place(problem) == (line, column + len("- id: "))
    assert problem.reason == "duplicate stream id 'a' (first at streams[0])"
    assert problem.fix


def test_duplicate_step_ids_within_a_stream() -> None:
    text = edit(VALID, "{id: s2,", "{id: s1,")
    problem = only(text)
    assert place(problem) == locate(text, "s1", after="{id: s1, agent: sec")
    assert problem.reason == "stream 'a': duplicate step id 's1'"
    assert "unique" in problem.fix


def test_a_rollback_step_may_not_reuse_a_step_id() -> None:
    text = VALID + "    rollback: {budget: 2m, steps: [{id: x, agent: sec, action: sleep}]}\n"
    problem = only(text)
    assert place(problem) == locate(text, "x", after="steps: [{id: ")
    assert problem.reason == "stream 'b': duplicate step id 'x'"


def test_duplicate_resources() -> None:
    text = edit(VALID, "resources: [redis, database]", "resources: [redis, database, redis]")
    problem = only(text)
    assert place(problem) == locate(text, "redis", after="database, ")
    assert problem.reason == "duplicate resource 'redis'"


def test_duplicate_evidence_ids() -> None:
    text = edit(VALID, "evidence: [{id: report}]", "evidence: [{id: report}, {id: report}]")
    problem = only(text)
    assert place(problem) == locate(text, "report", after="{id: report}, {id: ")
    assert problem.reason == "stream 'a': duplicate evidence id 'report'"
    assert problem.fix


def test_a_lock_listed_twice() -> None:
    text = edit(VALID, "locks: [redis]", "locks: [redis, redis]")
    problem = only(text)
    assert place(problem) == locate(text, "redis", after="locks: [redis, ")
    assert problem.reason == "step 's1': lock 'redis' listed twice"


# --- durations and timelines -----------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle", "where"),
    [
        ("{timeout: 5m,", "{timeout: 10x,", "10x", "defaults.timeout"),
        (
            "{id: x, agent: sec, action: sleep}",
            "{id: x, agent: sec, action: sleep, timeout: 5 minutes}",
            "5 minutes",
            "streams.1.steps.0.timeout",
        ),
        (
            "{id: x, agent: sec, action: sleep}",
            "{id: x, agent: sec, action: sleep, lock_timeout: -1}",
            "-1",
            "streams.1.steps.0.lock_timeout",
        ),
        (
            "{id: x, agent: sec, action: sleep}",
            "{id: x, agent: sec, action: sleep, timeout: .nan}",
            ".nan",
            "streams.1.steps.0.timeout",
        ),
    ],
    ids=["defaults", "step", "negative", "nan"],
)
def test_bad_durations(old: str, new: str, needle: str, where: str) -> None:
    text = edit(VALID, old, new)
    problem = only(text)
    assert place(problem) == locate(text, needle)
    assert problem.reason.startswith(f"{where}: ")
    assert "duration" in problem.reason


def test_a_bad_duration_in_an_actions_parameters() -> None:
    text = edit(VALID, "with: {seconds: 250ms}", "with: {seconds: 2x}")
    problem = only(text)
    assert place(problem) == locate(text, "2x")
    assert problem.reason.startswith("streams.0.steps.0.with.seconds: not a duration: '2x'")
    assert "250ms, 30s" in problem.reason


@pytest.mark.parametrize(
    ("timeline", "says"),
    [
        ("30m..15m", "the hard limit is shorter than the expected time"),
        ("soon", "not a duration: 'soon'"),
        ("0", "a timeline limit must be above zero"),
        ("{expected: 30m, limit: 15m}", "the hard limit is shorter"),
        ("{expected: 30m, lim: 45m}", "unknown timeline key 'lim'"),
        ("[15m, 30m]", "not a timeline"),
    ],
    ids=["reversed", "words", "zero", "mapping-reversed", "mapping-unknown-key", "list"],
)
def test_bad_timelines(timeline: str, says: str) -> None:
    text = edit(VALID, "timeline: 15m..30m", f"timeline: {timeline}")
    problem = only(text)
    assert place(problem) == locate(text, timeline)
    assert problem.reason.startswith("streams.0.timeline: ")
    assert says in problem.reason


# --- action parameters ("with:") ---------------------------------------------------------


def test_with_failing_the_actions_parameter_model() -> None:
    text = edit(VALID, "with: {argv: [echo, hi]}", "with: {argv: []}")
    problem = only(text)
    assert place(problem) == locate(text, "[]")
    assert problem.reason.startswith("streams.0.steps.1.with.argv: ")
    assert "at least 1 item" in problem.reason


def test_with_missing_a_required_parameter() -> None:
    text = edit(VALID, "with: {argv: [echo, hi]}", "with: {cwd: sub}")
    problem = only(text)
    assert place(problem) == locate(text, "{cwd")
    assert problem.reason == "missing required key 'streams.0.steps.1.with.argv'"


def test_with_an_unknown_parameter_suggests_the_actions_own_keys() -> None:
    text = edit(VALID, "with: {seconds: 250ms}", "with: {secs: 250ms}")
    problem = only(text)
    assert place(problem) == locate(text, "secs")
    assert problem.reason == "unknown key 'secs'"
    assert problem.fix == "did you mean 'seconds'? Allowed keys here: fail, seconds"


def test_with_a_wrongly_typed_parameter() -> None:
    text = edit(VALID, "with: {argv: [echo, hi]}", "with: {argv: [echo, true]}")
    problem = only(text)
    assert place(problem) == locate(text, "true")
    assert problem.reason == "streams.0.steps.1.with.argv.1: Input should be a valid string"


# --- JSON plans ---------------------------------------------------------------------------


def _json_plan() -> str:
    return json.dumps(yaml.safe_load(VALID), indent=2)


@pytest.mark.parametrize(
    ("old", "new", "needle", "after"),
    [
        ('"cpu": 2,', '"cpu": 2,,', ",", '"cpu": 2,'),
        ('"plan": "demo"', "'plan': 'demo'", "'plan'", ""),
        ('"io": 1,', '"io": 1', '"light"', ""),
    ],
    ids=["double-comma", "single-quotes", "missing-comma"],
)
def test_json_syntax_errors(old: str, new: str, needle: str, after: str) -> None:
    text = edit(_json_plan(), old, new)
    problem = only(text, "plan.json")
    assert place(problem) == locate(text, needle, after=after)
    assert problem.reason.startswith("malformed JSON: ")
    assert problem.fix == "fix the JSON syntax"


def test_truncated_json() -> None:
    text = _json_plan()[:-1]
    problem = only(text, "plan.json")
    assert problem.reason.startswith("malformed JSON: ")
    assert problem.line == text.count("\n") + 1


def test_an_empty_json_file() -> None:
    problem = only("", "plan.json")
    assert place(problem) == (1, 1)
    assert problem.reason.startswith("malformed JSON: ")


def test_json_plan_problems_carry_positions() -> None:
    text = edit(_json_plan(), '"retries": 1', '"retries": 1,\n    "bogus": true')
    problem = only(text, "plan.json")
    assert problem.reason == "unknown key 'bogus'"
    assert place(problem) == locate(text, '"bogus"')
    assert "Allowed keys here: agent_class, backoff" in problem.fix


def test_json_cross_reference_problems_carry_positions() -> None:
    text = edit(_json_plan(), '"agent": "perf"', '"agent": "ghost"')
    problem = only(text, "plan.json")
    assert problem.reason == "step 's2': unknown agent 'ghost'"
    assert place(problem) == locate(text, '"ghost"')


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "raw"])
def test_json_positions_survive_text_yaml_cannot_read(ensure_ascii: bool) -> None:
    # json.dumps writes an emoji as a surrogate-pair escape, which libyaml rejects; a raw
    # DEL or C1 character is valid JSON and forbidden YAML. Positions must not be lost.
    data = yaml.safe_load(VALID)
    data["title"] = "ship it \U0001f680 \x7f\x9f \\ud83d"
    data["streams"][0]["steps"][1]["agent"] = "ghost"
    text = json.dumps(data, indent=2, ensure_ascii=ensure_ascii)
    problem = only(text, "plan.json")
    assert problem.reason == "step 's2': unknown agent 'ghost'"
    assert place(problem) == locate(text, '"ghost"')


def test_json_duplicate_keys_are_reported() -> None:
    text = edit(_json_plan(), '"plan": "demo",', '"plan": "demo",\n  "plan": "demo",')
    problem = only(text, "plan.json")
    assert problem.reason == "duplicate key 'plan'"
    assert place(problem) == locate(text, '"plan"', nth=2)


# --- many problems at once, files ----------------------------------------------------------


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    text = edit(VALID, "{class: io,", "{class: iox,")
    text = edit(text, "team: [sec, perf]", "team: [sec, perf, nobody]")
    text = edit(text, "locks: [redis]", "locks: [cache]")
    text = edit(text, "{id: s2,", "{id: s1,")
    text = edit(text, "depends_on: [a]", "depends_on: [a, b]")
    text = edit(text, "with: {seconds: 250ms}", "with: {seconds: 2x}")
    found = problems(text)
    assert [(p.line, p.column) for p in found] == sorted((p.line, p.column) for p in found)
    assert {p.reason.split(":")[0] for p in found} >= {
        "agent 'sec'",
        "stream 'a'",
        "step 's1'",
        "stream 'b' depends on itself",
    }
    assert len(found) == 6, "\n".join(map(str, found))


def test_schema_problems_and_syntax_level_duplicates_come_together() -> None:
    text = edit(VALID, "plan: demo\n", "plan: demo\nplan: again\nbogus: 1\n")
    found = problems(text)
    assert [p.reason for p in found] == ["duplicate key 'plan'", "unknown key 'bogus'"]


def test_load_plan_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "phase.yaml"
    path.write_text(edit(VALID, "locks: [redis]", "locks: [cache]"), encoding="utf-8")
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.path == str(path)
    assert str(info.value).splitlines() == [
        "plan invalid: 1 problem",
        f"{path}:{problem.line}:{problem.column}: step 's1': unknown resource 'cache' "
        f"(fix: {problem.fix})",
    ]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanInvalid) as info:
        load_plan(tmp_path / "nope.yaml")
    (problem,) = info.value.problems
    assert problem.reason == "no such file"
    assert problem.fix


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(VALID.replace("A small plan", "caf\xe9").encode("latin-1"))
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.reason.startswith("not UTF-8: byte 0xe9")
    text = VALID.replace("A small plan", "caf\xe9")
    before = text[: text.index("\xe9")]
    assert (problem.line, problem.column) == (
        before.count("\n") + 1,
        len(before.split("\n")[-1]) + 1,
    )
    assert problem.fix == "save the file as UTF-8"
