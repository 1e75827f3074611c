"""Evidence counts only for what it names: real external agent processes answering hostile
evidence, and built-in actions that must produce the kind of evidence a requirement expects."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio

from agents.base import ActionResult, Evidence
from orchestrator.evidence_match import match_requirements, provides_of
from orchestrator.evidence_view import evidence_from_events, render_evidence
from orchestrator.scheduler import StreamStatus
from orchestrator.step_runner import StepOutcome, StepStatus
from streams.model import Plan, StreamSpec
from tests.helpers import events_named, run_plan

REQUIREMENTS = [
    {"id": "auth-logs", "description": "docker logs redis showing successful AUTH commands"},
    {"id": "conn-test", "description": "a client connected with the password"},
]


def agent_answering(tmp_path: Path, evidence: list[dict[str, Any]], name: str) -> list[str]:
    """argv of a real agent process that answers ``succeeded`` with ``evidence``."""
    script = tmp_path / f"{name}.py"
    answer = {"protocol": 1, "status": "succeeded", "summary": "done", "evidence": evidence}
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            json.load(sys.stdin)
            print("working", file=sys.stderr)
            print(json.dumps({answer!r}))
            """
        )
    )
    return [sys.executable, str(script)]


def plan_with(
    command: list[str],
    *,
    evidence: list[dict[str, Any]] = REQUIREMENTS,
    gate: dict[str, Any] | None = None,
    extra_steps: tuple[dict[str, Any], ...] = (),
) -> Plan:
    stream: dict[str, Any] = {
        "id": "redis-auth",
        "team": ["writer", "runner"],
        "steps": [
            {
                "id": "configure",
                "agent": "writer",
                "instruction": "Enable AUTH on Redis and show it works",
                "evidence": [r["id"] for r in evidence],
            },
            *extra_steps,
        ],
        "evidence": evidence,
    }
    if gate is not None:
        stream["gate"] = gate
    return Plan.model_validate(
        {
            "version": 1,
            "plan": "honest",
            "caps": {"light": None},
            "agents": {
                "writer": {"class": "light", "driver": {"command": command, "kill_grace": 1}},
                "runner": {"class": "light", "can": ["command"]},
            },
            "streams": [stream],
        }
    )


def gate_of(plan: Plan, tmp_path: Path) -> tuple[StreamStatus, dict[str, Any]]:
    result, events = anyio.run(lambda: run_plan(plan, workdir=tmp_path))
    (gate,) = events_named(events, "gate_evaluated")
    return result.streams["redis-auth"].status, gate


def by_id(gate: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in gate["evidence"]}


def test_the_hostile_answer_of_the_issue_satisfies_nothing(tmp_path: Path) -> None:
    command = agent_answering(
        tmp_path,
        [
            {"id": "not-a-requirement", "check": "context package sha256 matches"},
            {"check": "no id"},
        ],
        "hostile",
    )
    status, gate = gate_of(plan_with(command), tmp_path)
    assert status is StreamStatus.FAILED
    assert gate["passed"] is False
    assert [m.split(" (")[0] for m in gate["missing_evidence"]] == ["auth-logs", "conn-test"]
    assert {r["status"] for r in gate["evidence"]} == {"missing"}
    assert "none naming it" in by_id(gate)["auth-logs"]["why"]


def test_a_claim_counts_only_for_the_requirement_it_names(tmp_path: Path) -> None:
    command = agent_answering(
        tmp_path,
        [{"id": "auth-logs", "check": "docker logs redis | grep AUTH", "excerpt": "AUTH ok"}],
        "honest",
    )
    status, gate = gate_of(plan_with(command), tmp_path)
    assert status is StreamStatus.FAILED
    found = by_id(gate)
    assert found["auth-logs"] == {
        "id": "auth-logs",
        "status": "claimed",
        "step": "configure",
        "check": "docker logs redis | grep AUTH",
        "source": "agent",
    }
    assert found["conn-test"]["status"] == "missing"
    assert gate["missing_evidence"][0].startswith("conn-test (")


def test_claims_naming_every_requirement_pass_unless_verified_is_required(
    tmp_path: Path,
) -> None:
    claims = [{"id": r["id"], "check": f"checked {r['id']}"} for r in REQUIREMENTS]
    command = agent_answering(tmp_path, claims, "claims")
    status, gate = gate_of(plan_with(command), tmp_path)
    assert status is StreamStatus.SUCCEEDED and gate["missing_evidence"] == []
    assert [r["status"] for r in gate["evidence"]] == ["claimed", "claimed"]

    strict = plan_with(command, gate={"require_verified": True})
    status, gate = gate_of(strict, tmp_path)
    assert status is StreamStatus.FAILED
    assert gate["missing_evidence"] == [
        "auth-logs (only claimed by an agent; verified required)",
        "conn-test (only claimed by an agent; verified required)",
    ]


def test_evidence_collected_says_what_each_record_provides(tmp_path: Path) -> None:
    command = agent_answering(
        tmp_path,
        [{"id": "auth-logs", "check": "a"}, {"id": "elsewhere", "check": "b"}, {"check": "c"}],
        "mixed",
    )
    _, events = anyio.run(lambda: run_plan(plan_with(command), workdir=tmp_path))
    provides = {e["check"]: e["provides"] for e in events_named(events, "evidence_collected")}
    assert provides == {"a": ["auth-logs"], "b": [], "c": []}


def _command_step(step_id: str, provides: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-c", "print('AUTH ok')"]
    return {
        "id": step_id,
        "agent": "runner",
        "action": "command",
        "with": {"argv": argv},
        "needs": [],
        "evidence": provides,
    }


def test_a_builtin_action_provides_only_the_kinds_of_evidence_it_collected(
    tmp_path: Path,
) -> None:
    command = agent_answering(tmp_path, [], "silent")
    evidence = [
        {"id": "auth-logs", "kinds": ["docker"], "verified": True},
        {"id": "conn-test", "kinds": ["command"], "verified": True},
    ]
    plan = plan_with(
        command,
        evidence=evidence,
        extra_steps=(_command_step("probe", ["auth-logs", "conn-test"]),),
    )
    # The instruction step declares both too (plan_with): it collected nothing.
    status, gate = gate_of(plan, tmp_path)
    assert status is StreamStatus.FAILED
    found = by_id(gate)
    assert found["conn-test"]["status"] == "verified" and found["conn-test"]["step"] == "probe"
    assert found["conn-test"]["source"] == "command"
    assert found["auth-logs"]["status"] == "missing"
    assert "of kind docker" in found["auth-logs"]["why"]


def test_the_gate_event_round_trips_through_the_evidence_view(tmp_path: Path) -> None:
    command = agent_answering(tmp_path, [{"id": "auth-logs", "check": "grep AUTH"}], "view")
    _, events = anyio.run(lambda: run_plan(plan_with(command), workdir=tmp_path))
    report = evidence_from_events("run-test", events)
    text = render_evidence(report)
    assert "evidence auth-logs: claimed by step configure (agent: grep AUTH)" in text
    assert "missing evidence: conn-test (step configure collected 1 record(s)" in text
    assert json.dumps(report.gates[0].requirements[0]) == json.dumps(
        {
            "id": "auth-logs",
            "status": "claimed",
            "step": "configure",
            "check": "grep AUTH",
            "source": "agent",
        }
    )


def _outcome(*records: Evidence) -> StepOutcome:
    result = ActionResult(ok=True, summary="ok", evidence=records)
    return StepOutcome(StepStatus.SUCCEEDED, "ok", 1, result)


def test_matching_rules_one_by_one() -> None:
    spec = StreamSpec.model_validate(
        {
            "id": "s",
            "team": ["w"],
            "steps": [{"id": "a", "agent": "w", "action": "x", "evidence": ["r1", "r2", "r3"]}],
            "evidence": [
                {"id": "r1", "kinds": ["docker"]},
                {"id": "r2"},
                {"id": "r3", "verified": True},
            ],
        }
    )
    step = spec.steps[0]
    claim_r3 = Evidence(check="says r3", source="agent", verified=False, id="r3")
    tagged_other = Evidence(check="for r2 only", source="docker", id="r2")
    command = Evidence(check="ran it", source="command")
    found = {
        f.requirement: f
        for f in match_requirements(spec, [(step, _outcome(claim_r3, tagged_other, command))])
    }
    # r1 wants docker evidence: the docker record names r2, the command one is the wrong kind.
    assert not found["r1"].satisfied
    # r2: the record that names it, and (unnamed, any kind) the command's; named comes first.
    assert (found["r2"].satisfied, found["r2"].check) == (True, "for r2 only")
    # r3 needs verified evidence: a claim naming it is not enough; the unnamed verified
    # command record counts (r3 lists no kinds).
    assert (found["r3"].satisfied, found["r3"].verified, found["r3"].check) == (
        True,
        True,
        "ran it",
    )
    assert provides_of(claim_r3, ["r3"]) == ["r3"] and provides_of(claim_r3, ["r1"]) == []
    assert provides_of(command, ["r1", "r2"]) == ["r1", "r2"]


def test_a_step_that_succeeded_before_a_resume_is_not_called_unsuccessful() -> None:
    spec = StreamSpec.model_validate(
        {
            "id": "s",
            "team": ["w"],
            "steps": [{"id": "a", "agent": "w", "action": "x", "evidence": ["r"]}],
            "evidence": [{"id": "r"}],
        }
    )
    (finding,) = match_requirements(spec, [(spec.steps[0], None)])
    assert not finding.satisfied and finding.why == "step a collected none"
