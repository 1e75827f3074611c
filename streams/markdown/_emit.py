"""The imported plan written as YAML text, with comments naming the source lines.

Written by hand rather than dumped so that the comments can sit where they help: a header
listing what was not mapped and what was assumed, the source line of each stream and value,
and the words of a source line that have no plan field. Every value itself goes through
``yaml.safe_dump``, so quoting is always right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from streams.markdown._draft import PlanDraft, Sourced, StreamDraft
from streams.markdown._report import ImportReport, ReportItem

__all__ = ["DRIVER_UNSET", "emit"]

# What an imported agent's missing driver says: `orchestrator validate` then names each
# agent that needs one, at its line.
DRIVER_UNSET = "driver unset: give it `driver: {command: [PROGRAM, ...]}`"

_COMMENT_COLUMN = 44
# Characters YAML forbids or reads as line breaks: never let one into a comment.
_NOT_IN_COMMENT = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]"
)

_FIELD_ORDER = (
    "methodology",
    "success_probability",
    "risk",
    "risk_level",
    "timeline",
    "current_state",
    "strategy",
    "expected_improvement",
)


def _value(value: object) -> str:
    """``value`` as one line of YAML (flow style for lists and mappings)."""
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1 << 30, sort_keys=False
    ).strip()
    return text.removesuffix("\n...").strip()


def _comment(text: str) -> str:
    return " ".join(_NOT_IN_COMMENT.sub("?", text).split())


class _Writer:
    def __init__(self) -> None:
        self.out: list[str] = []

    def line(self, text: str, comment: str = "") -> None:
        comment = _comment(comment)
        if comment:
            text = (
                f"{text.ljust(_COMMENT_COLUMN)}  # {comment}"
                if text.strip()
                else f"{text}# {comment}"
            )
        self.out.append(text.rstrip())

    def key(self, indent: int, key: str, value: object, comment: str = "") -> None:
        self.line(f"{' ' * indent}{_value(key)}: {_value(value)}", comment)


def _where(line: int, note: str = "") -> str:
    if not line:
        return note
    return f"line {line}" + (f": {note}" if note else "")


def _items(writer: _Writer, title: str, source: str, items: Sequence[ReportItem]) -> None:
    if not items:
        return
    writer.line("#")
    writer.line(f"# {title} ({source} line: text: why):")
    for item in items:
        text = f"{item.text!r}: " if item.text else ""
        writer.line(f"#   {item.where()}: {_comment(text + item.detail)}")


def emit(plan: PlanDraft, report: ImportReport) -> str:
    """The plan file for ``plan``, its header listing ``report``'s unmapped and assumed
    items with their lines."""
    w = _Writer()
    w.line(f"# Imported from {_comment(report.source)} by `orchestrator import`; review before")
    w.line("# running. No agent has a driver yet: give each one `driver: {command: [...]}`, the")
    w.line("# program that performs its steps (`orchestrator validate` lists what is missing).")
    _items(w, "Not mapped", report.source, report.unmapped)
    _items(w, "Assumed", report.source, report.assumptions)
    w.line("version: 1")
    w.key(0, "plan", plan.plan_id)
    if plan.title is not None:
        w.key(0, "title", plan.title.value, _where(plan.title.line))
    if plan.summary is not None:
        w.key(0, "summary", plan.summary.value, _where(plan.summary.line))
    w.key(
        0,
        "caps",
        plan.caps,
        _where(plan.caps_line) if plan.caps_line else "assumed: the file sets no limits",
    )
    if plan.resources is not None:
        w.key(0, "resources", plan.resources.value, _where(plan.resources.line))
    if plan.token_limit is not None:
        w.line("defaults:")
        w.key(2, "token_limit", plan.token_limit.value, _where(plan.token_limit.line))
    w.line("agents:")
    for name, agent in plan.agents.items():
        spec: dict[str, object] = {"class": agent.resource_class}
        if agent.role:
            spec["role"] = agent.role
        if agent.display_name and agent.display_name != name:
            spec["display_name"] = agent.display_name
        if agent.token_limit is not None:
            spec["token_limit"] = agent.token_limit.value
        source = _where(agent.line) if agent.line else "class: default"
        if agent.definition:
            source = f"defined in {agent.definition}"
            if agent.model or agent.tools:
                extra = [f"model {agent.model}"] if agent.model else []
                extra += [f"tools {', '.join(agent.tools)}"] if agent.tools else []
                source += f" ({'; '.join(extra)})"
        w.key(2, name, spec, f"{source}; {DRIVER_UNSET}")
    w.line("streams:")
    for stream in plan.streams:
        _stream(w, stream)
    return "\n".join(w.out) + "\n"


def _sourced(w: _Writer, indent: int, key: str, item: Sourced[Any] | None) -> None:
    if item is not None:
        w.key(indent, key, item.value, _where(item.line, item.note))


def _stream(w: _Writer, s: StreamDraft) -> None:
    w.line("")
    w.line(f"  # {_where(s.line, s.heading)}")
    w.line(f"  - id: {_value(s.id)}")
    w.key(4, "title", s.title)
    w.key(4, "priority", s.priority.value, _where(s.priority.line))
    _sourced(w, 4, "group", s.group)
    for key in _FIELD_ORDER:
        _sourced(w, 4, key, s.fields.get(key))
    w.key(4, "team", s.team, _where(s.team_line))
    if s.lead is not None:
        w.key(4, "lead", s.lead.value, _where(s.lead.line, s.lead.note))
    if s.depends_on or s.dependencies is not None:
        deps = list(dict.fromkeys(d.value for d in s.depends_on))
        said = s.dependencies or s.depends_on[0]
        w.key(
            4, "depends_on", deps, _where(said.line, s.dependencies.value if s.dependencies else "")
        )
    w.line("    steps:")
    for number, step in enumerate(s.steps, 1):
        agent = s.step_agents.get(number - 1)
        last = number == len(s.steps) and bool(s.evidence) and s.lead is not None
        if not last and (agent is None or s.lead is None or agent == s.lead.value):
            w.line(f"      - {_value(step.value)}", _where(step.line, step.note))
            continue
        if not last:
            spec0 = {"id": f"step-{number}", "agent": agent, "instruction": step.value}
            w.line(f"      - {_value(spec0)}", _where(step.line, step.note))
            continue
        assert s.lead is not None
        # The stream's evidence counts only from a step that declares it, and a sentence
        # step written as a plain string cannot: the last one is spelled out to declare it.
        spec = {
            "id": f"step-{number}",
            "agent": agent or s.lead.value,
            "instruction": step.value,
            "evidence": [ev.value[0] for ev in s.evidence],
        }
        w.line(f"      - {_value(spec)}", _where(step.line, step.note))
    if s.threshold is not None or s.criteria:
        w.line("    gate:")
        if s.threshold is not None:
            w.key(6, "threshold", s.threshold.value, _where(s.threshold.line))
        if s.criteria:
            w.line("      criteria:")
            for criterion in s.criteria:
                w.line(
                    f"        - {_value(criterion.value)}", _where(criterion.line, criterion.note)
                )
    if s.evidence:
        w.line("    evidence:")
        for ev in s.evidence:
            ev_id, description = ev.value
            w.line(f"      - {_value({'id': ev_id, 'description': description})}", _where(ev.line))
    if s.rollback_steps or s.rollback_budget is not None:
        w.line("    rollback:", _where(s.rollback_line))
        if s.rollback_budget is not None:
            w.key(6, "budget", s.rollback_budget.value, _where(s.rollback_budget.line))
        if s.rollback_steps:
            w.line("      steps:")
            for step in s.rollback_steps:
                w.line(f"        - {_value(step.value)}", _where(step.line))
