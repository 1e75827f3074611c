"""A run's evidence, read back from its stored events: ``orchestrator evidence RUN_ID``.

Two kinds of events say what a run proved: ``evidence_collected`` (one per piece of
evidence an action collected: what was checked, from which source, verified by the daemon
or only claimed by an agent, its metrics, an excerpt and the sha256 of the full output) and
``gate_evaluated`` (each stream's success gate: confidence, threshold, every criterion's
verdict and the values it looked at, and per mandatory evidence requirement the record that
satisfied it, verified or claimed, or why it is missing).

:func:`load_evidence` pages them out of the run store; :func:`render_evidence` lists them
for people and :func:`evidence_json` gives them to scripts (``--json``). Events are
redacted when emitted, so nothing here can show a secret the store does not already hide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import UsageError
from orchestrator.step_output import StepOutput, step_output
from orchestrator.store import RunStore

__all__ = [
    "EvidenceRecord",
    "EvidenceReport",
    "GateRecord",
    "evidence_from_events",
    "evidence_json",
    "load_evidence",
    "render_evidence",
]

_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """One ``evidence_collected`` event."""

    seq: int
    ts: str
    stream: str
    step: str
    agent: str | None
    attempt: int | None
    step_status: str | None
    phase: str | None  # "undo" or "rollback" for a reverting step, else None
    provides: tuple[str, ...]
    check: str
    source: str
    verified: bool
    metrics: Mapping[str, Any]
    detail: Mapping[str, Any]
    excerpt: str
    sha256: str | None
    collected_at: str | None


@dataclass(frozen=True, slots=True)
class GateRecord:
    """One ``gate_evaluated`` event: a stream's gate and mandatory evidence verdict."""

    seq: int
    ts: str
    stream: str
    passed: bool
    confidence: float | None
    threshold: float | None
    criteria_met: int | None
    criteria: tuple[Mapping[str, Any], ...]
    missing_evidence: tuple[str, ...]
    requirements: tuple[Mapping[str, Any], ...] = ()  # per requirement: satisfied by what


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """A run's evidence and gates in event order, optionally of one ``stream`` only."""

    run_id: str
    stream: str | None = None
    evidence: tuple[EvidenceRecord, ...] = ()
    gates: tuple[GateRecord, ...] = ()
    streams: tuple[str, ...] = field(default=())  # in order of first appearance
    outputs: tuple[StepOutput, ...] = ()  # every finished attempt's stdout/stderr tails

    def of_stream(self, stream: str) -> tuple[list[GateRecord], list[EvidenceRecord]]:
        return (
            [g for g in self.gates if g.stream == stream],
            [e for e in self.evidence if e.stream == stream],
        )


def evidence_from_events(
    run_id: str, events: Iterable[Mapping[str, Any]], *, stream: str | None = None
) -> EvidenceReport:
    """Pick a run's evidence and gate events (of ``stream`` only, if given)."""
    evidence: list[EvidenceRecord] = []
    gates: list[GateRecord] = []
    streams: dict[str, None] = {}
    outputs: list[StepOutput] = []
    for event in events:
        name = event.get("event")
        sid = event.get("stream")
        output = step_output(event)
        if output is not None and (stream is None or output.stream == stream):
            outputs.append(output)
            streams.setdefault(output.stream)
        if name not in ("evidence_collected", "gate_evaluated") or not isinstance(sid, str):
            continue
        if stream is not None and sid != stream:
            continue
        streams.setdefault(sid)
        if name == "evidence_collected":
            evidence.append(_evidence(event, sid))
        else:
            gates.append(_gate(event, sid))
    return EvidenceReport(
        run_id, stream, tuple(evidence), tuple(gates), tuple(streams), tuple(outputs)
    )


async def load_evidence(
    store: RunStore, run_id: str, *, stream: str | None = None
) -> EvidenceReport:
    """The evidence of ``run_id`` in ``store``.

    Raises UsageError naming the fix for an unknown run or a stream the run does not have,
    and StoreError if the store fails.
    """
    run = await store.get_run(run_id)
    if run is None:
        raise UsageError(
            f"no run {run_id!r} in the run store {store.where} "
            "(fix: `orchestrator status` lists the runs; check --state-dir / ORCH_STORE)"
        )
    if stream is not None:
        known = [s.stream for s in await store.get_streams(run_id)]
        if stream not in known:
            raise UsageError(
                f"run {run_id} has no stream {stream!r} "
                f"(fix: use one of: {', '.join(known) or 'none recorded'})"
            )
    events: list[dict[str, Any]] = []
    after = 0
    while page := await store.read_events(run_id, after_seq=after, limit=_PAGE):
        events.extend(page)
        after = int(page[-1]["seq"])
    return evidence_from_events(run_id, events, stream=stream)


def render_evidence(report: EvidenceReport, *, excerpt_lines: int = 5) -> str:
    """The listing for people: per stream its gate, then each piece of evidence."""
    count = len(report.evidence)
    scope = f", stream {report.stream}" if report.stream else ""
    lines = [
        f"run {report.run_id}{scope}: {count} piece{'s' if count != 1 else ''} of evidence, "
        f"{len(report.gates)} gate{'s' if len(report.gates) != 1 else ''}"
    ]
    for stream in report.streams:
        gates, evidence = report.of_stream(stream)
        lines.append(f"stream {stream}")
        for gate in gates:
            lines += _gate_lines(gate)
        for record in evidence:
            lines += _evidence_lines(record, excerpt_lines)
        for output in report.outputs:
            if output.stream == stream:
                lines += _output_lines(output, excerpt_lines)
    if not report.streams:
        lines.append("no evidence was collected and no gate was evaluated")
    return "\n".join(lines) + "\n"


def _output_lines(output: StepOutput, tail_lines: int) -> list[str]:
    if not output.stdout_tail and not output.stderr_tail:
        return []
    about = [f"attempt {output.attempt}" if output.attempt is not None else "", output.status]
    lines = [f"  output of step {output.step} ({', '.join(a for a in about if a)})"]
    for name, text in (("stdout", output.stdout_tail), ("stderr", output.stderr_tail)):
        shown = text.rstrip("\n").splitlines()[-tail_lines:]
        if shown:
            lines.append(f"    {name}:   | {shown[0]}")
            lines += [f"              | {line}" for line in shown[1:]]
    return lines


def evidence_json(report: EvidenceReport) -> dict[str, Any]:
    """The report as JSON-able data (``evidence --json``): flat lists in event order."""
    return {
        "run_id": report.run_id,
        "stream": report.stream,
        "evidence": [
            {
                "seq": e.seq,
                "ts": e.ts,
                "stream": e.stream,
                "step": e.step,
                "agent": e.agent,
                "attempt": e.attempt,
                "step_status": e.step_status,
                "phase": e.phase,
                "provides": list(e.provides),
                "check": e.check,
                "source": e.source,
                "verified": e.verified,
                "metrics": dict(e.metrics),
                "detail": dict(e.detail),
                "excerpt": e.excerpt,
                "sha256": e.sha256,
                "collected_at": e.collected_at,
            }
            for e in report.evidence
        ],
        "gates": [
            {
                "seq": g.seq,
                "ts": g.ts,
                "stream": g.stream,
                "passed": g.passed,
                "confidence": g.confidence,
                "threshold": g.threshold,
                "criteria_met": g.criteria_met,
                "criteria": [dict(c) for c in g.criteria],
                "missing_evidence": list(g.missing_evidence),
                "evidence": [dict(r) for r in g.requirements],
            }
            for g in report.gates
        ],
        "outputs": [
            {
                "seq": o.seq,
                "ts": o.ts,
                "stream": o.stream,
                "step": o.step,
                "attempt": o.attempt,
                "status": o.status,
                "phase": o.phase,
                "stdout_tail": o.stdout_tail,
                "stderr_tail": o.stderr_tail,
                "output_bytes": o.output_bytes,
            }
            for o in report.outputs
        ],
    }


# -- events to records ---------------------------------------------------------------------


def _evidence(event: Mapping[str, Any], stream: str) -> EvidenceRecord:
    attempt = event.get("attempt")
    sha = event.get("sha256")
    return EvidenceRecord(
        seq=int(event.get("seq", 0)),
        ts=str(event.get("ts", "")),
        stream=stream,
        step=str(event.get("step", "?")),
        agent=_text(event.get("agent")),
        attempt=attempt if type(attempt) is int else None,
        step_status=_text(event.get("step_status")),
        phase=_text(event.get("phase")),
        provides=tuple(str(p) for p in _list(event.get("provides"))),
        check=str(event.get("check", "")),
        source=str(event.get("source", "")),
        verified=bool(event.get("verified", False)),
        metrics=_mapping(event.get("metrics")),
        detail=_mapping(event.get("detail")),
        excerpt=str(event.get("excerpt") or ""),
        sha256=sha if isinstance(sha, str) else None,
        collected_at=_text(event.get("collected_at")),
    )


def _gate(event: Mapping[str, Any], stream: str) -> GateRecord:
    met = event.get("criteria_met")
    return GateRecord(
        seq=int(event.get("seq", 0)),
        ts=str(event.get("ts", "")),
        stream=stream,
        passed=bool(event.get("passed", False)),
        confidence=_number(event.get("confidence")),
        threshold=_number(event.get("threshold")),
        criteria_met=met if type(met) is int else None,
        criteria=tuple(c for c in _list(event.get("criteria")) if isinstance(c, Mapping)),
        missing_evidence=tuple(str(m) for m in _list(event.get("missing_evidence"))),
        requirements=tuple(r for r in _list(event.get("evidence")) if isinstance(r, Mapping)),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# -- rendering -------------------------------------------------------------------------------


def _gate_lines(gate: GateRecord) -> list[str]:
    verdict = "passed" if gate.passed else "FAILED"
    parts = [f"  gate {verdict}"]
    if gate.confidence is not None and gate.threshold is not None:
        parts.append(f"confidence {gate.confidence:.0%} (threshold {gate.threshold:.0%})")
    if gate.criteria_met is not None:
        parts.append(f"{gate.criteria_met} of {len(gate.criteria)} criteria met")
    lines = [", ".join(parts)]
    for criterion in gate.criteria:
        values = ", ".join(
            _value(v) for v in _list(criterion.get("values")) if isinstance(v, Mapping)
        )
        shown = f"    {criterion.get('verdict', '?')!s:<12} {criterion.get('expr', '?')}"
        lines.append(f"{shown}  [{values}]" if values else shown)
    if not gate.requirements:  # events from before requirements were listed one by one
        lines += [f"    missing evidence: {m}" for m in gate.missing_evidence]
    lines += [_requirement_line(r) for r in gate.requirements]
    return lines


def _requirement_line(requirement: Mapping[str, Any]) -> str:
    rid, status = requirement.get("id", "?"), requirement.get("status")
    if status == "missing":
        return f"    missing evidence: {rid} ({requirement.get('why', '')})"
    return (
        f"    evidence {rid}: {status} by step {requirement.get('step')} "
        f"({requirement.get('source')}: {requirement.get('check')})"
    )


def _value(value: Mapping[str, Any]) -> str:
    if value.get("value") is None:
        return f"{value.get('metric')} not measured"
    how = value.get("source") or ("verified" if value.get("verified") else "claimed")
    return f"{value.get('metric')}={_show(value.get('value'))} ({how})"


def _show(value: Any) -> str:
    """A metric's value as people write it: ``84``, not ``84.0``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _evidence_lines(record: EvidenceRecord, excerpt_lines: int) -> list[str]:
    head = f"  step {record.step}"
    about = [
        f"attempt {record.attempt}" if record.attempt is not None else "",
        record.step_status or "",
        record.phase or "",
    ]
    about = [a for a in about if a]
    if about:
        head += f" ({', '.join(about)})"
    if record.provides:
        head += f", provides {', '.join(record.provides)}"
    how = "verified" if record.verified else "claimed by the agent"
    lines = [
        head,
        f"    check:    {record.check}",
        f"    source:   {record.source}, {how}",
    ]
    if record.metrics:
        metrics = ", ".join(f"{k}={_show(v)}" for k, v in record.metrics.items())
        lines.append(f"    metrics:  {metrics}")
    if record.sha256:
        lines.append(f"    sha256:   {record.sha256}")
    text = record.excerpt.strip("\n").splitlines()
    if text:
        shown = text[:excerpt_lines]
        lines.append(f"    excerpt:  | {shown[0]}")
        lines += [f"              | {line}" for line in shown[1:]]
        if len(text) > len(shown):
            more = len(text) - len(shown)
            lines.append(f"              ({more} more line{'s' if more != 1 else ''})")
    return lines
