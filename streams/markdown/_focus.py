"""Focus areas (``### 1. REDIS AUTHENTICATION (CRITICAL PRIORITY)``) read into stream drafts.

A focus area's lines are ``**Label**: value`` pairs (bulleted or not) and lists under a label
with no value (``**Implementation Sequence**:`` then ``1. ...``). Known labels fill stream
fields; anything else is reported with its line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from streams.markdown._document import Section
from streams.markdown._draft import Sourced, StreamDraft
from streams.markdown._report import Ledger
from streams.markdown._text import ascii_words, list_item, slugify, split_label, strip_emphasis
from streams.markdown._values import PRIORITIES, agent_names, duration, percent, risk, timeline

__all__ = ["display_title", "focus_area", "match_stream", "resolve_dependencies"]

_LABELS = {
    "methodology": "methodology",
    "approach": "methodology",
    "method": "methodology",
    "current state": "current_state",
    "current status": "current_state",
    "baseline": "current_state",
    "implementation strategy": "strategy",
    "strategy": "strategy",
    "risk assessment": "risk",
    "risk": "risk",
    "risk level": "risk",
    "success probability": "success_probability",
    "probability of success": "success_probability",
    "confidence": "success_probability",
    "expected improvement": "expected_improvement",
    "expected outcome": "expected_improvement",
    "expected impact": "expected_improvement",
    "timeline": "timeline",
    "duration": "timeline",
    "estimated time": "timeline",
    "time estimate": "timeline",
    "dependencies": "dependencies",
    "dependency": "dependencies",
    "depends on": "dependencies",
    "rollback time": "rollback_time",
    "recovery time": "rollback_time",
    "agent team": "team",
    "team": "team",
    "agents": "team",
    "assigned agents": "team",
    "implementation sequence": "steps",
    "implementation steps": "steps",
    "execution sequence": "steps",
    "sequence": "steps",
    "steps": "steps",
    "lead": "lead",
    "lead agent": "lead",
    "priority": "priority",
}
_TEXT_FIELDS = ("current_state", "strategy", "expected_improvement")
_ACRONYMS = {
    "ai", "api", "aws", "cd", "ci", "cpu", "db", "dns", "etl", "gcp", "gpu", "grpc", "http",
    "https", "io", "jwt", "k8s", "llm", "ml", "os", "sql", "ssh", "sso", "ssl", "tls", "ui",
    "vm",
}  # fmt: skip


def display_title(name: str, lines: Sequence[str]) -> str:
    """How to title a focus area named ``name`` (often all capitals in its heading): the
    first spelling of the same words elsewhere in the file with every word capitalised
    (``GPU Optimization`` in a table), else the first mixed-case one, else the words
    capitalised with acronyms kept upper-case."""
    if not name.isupper():
        return name
    pattern = re.compile(r"\b" + r"\s+".join(map(re.escape, name.split())) + r"\b", re.I)
    spellings = [
        " ".join(match.group().split())
        for line in lines
        for match in pattern.finditer(line)
        if not match.group().isupper()
    ]
    titled = [s for s in spellings if all(w[:1].isupper() for w in s.split())]
    if titled or spellings:
        return (titled or spellings)[0]
    return " ".join(w if w.lower() in _ACRONYMS else w.capitalize() for w in name.split())


def _methodology(value: str) -> str:
    words = strip_emphasis(value).lower().split()
    while len(words) > 1 and words[-1] in {"approach", "methodology", "method"}:
        words.pop()
    return " ".join(words)


def focus_area(section: Section, ledger: Ledger, taken: set[str]) -> StreamDraft:
    """A stream draft from one focus-area section; ``taken`` holds the ids used so far (a
    repeated name gets ``-2``); every line used or skipped is recorded in ``ledger``."""
    assert section.focus is not None
    focus = section.focus
    base = slugify(focus.name) or f"focus-area-{focus.number or len(taken) + 1}"
    stream_id, n = base, 2
    while stream_id in taken:
        stream_id, n = f"{base}-{n}", n + 1
    taken.add(stream_id)
    name = focus.name if slugify(focus.name) else f"Focus area {focus.number or len(taken)}"
    draft = StreamDraft(stream_id, name, section.line, section.title, focus.number)
    where = f"streams[{stream_id}]"
    if focus.priority in PRIORITIES:
        draft.priority = Sourced(focus.priority, section.line)
        ledger.map(section.line, section.title, section.title, f"{where}.priority")
    elif focus.priority:
        ledger.skip(
            section.line,
            section.title,
            section.title,
            f"unknown priority {focus.priority!r} (one of {', '.join(PRIORITIES)}): medium used",
        )
    else:
        ledger.assume(section.line, section.title, section.title, "no priority: medium")
    ledger.use(section.line)
    _Reader(draft, section, ledger).read()
    if stream_id != base:
        ledger.assume(
            section.line,
            section.title,
            section.title,
            f"a second focus area named like this one: id {stream_id!r}",
        )
    return draft


class _Reader:
    """Walks one focus area's lines (a small state machine: a label with no value opens a
    list that the following items fill)."""

    def __init__(self, draft: StreamDraft, section: Section, ledger: Ledger) -> None:
        self.draft = draft
        self.section = section
        self.ledger = ledger
        self.where = f"streams[{draft.id}]"
        self.pending: tuple[str, int, str] | None = None  # field, line, label text
        self.items: list[tuple[int, str]] = []

    def read(self) -> None:
        for line in self.section.lines:
            if not line.text.strip():
                continue
            item = list_item(line.text)
            if self.pending is not None and item is not None and not line.heading:
                self.items.append((line.number, item))
                continue
            self._close()
            label = split_label(line.text)
            if label is None or (item is not None and label[0] not in _LABELS):
                continue  # prose or a stray item: reported with its section's leftovers
            key = _LABELS.get(label[0])
            if key is None:
                self.ledger.skip(
                    line.number, self.section.title, line.text, f"no plan field for {label[0]!r}"
                )
            elif not label[1] and key in {"steps", "team", *_TEXT_FIELDS}:
                self.pending = (key, line.number, line.text)
                self.ledger.use(line.number)
            else:
                self._field(key, label[1], line.number, line.text)
        self._close()

    def _close(self) -> None:
        if self.pending is None:
            return
        key, number, text = self.pending
        self.pending = None
        items, self.items = self.items, []
        if not items:
            self.ledger.skip(number, self.section.title, text, "a label with nothing under it")
        elif key == "steps":
            for line, sentence in items:
                self.draft.steps.append(Sourced(sentence, line))
                self.ledger.map(line, self.section.title, sentence, f"{self.where}.steps")
        elif key == "team":
            self._team(", ".join(sentence for _, sentence in items), number, text)
            self.ledger.use(*(line for line, _ in items))
        else:
            self._field(key, "; ".join(s for _, s in items), number, text)
            self.ledger.use(*(line for line, _ in items))

    def _field(self, key: str, value: str, line: int, text: str) -> None:
        draft, title, where = self.draft, self.section.title, f"{self.where}.{key}"
        if key == "methodology" and _methodology(value):
            draft.fields["methodology"] = Sourced(_methodology(value), line)
            self.ledger.map(line, title, text, where)
        elif key == "success_probability" and (p := percent(value)) is not None:
            note = re.sub(r"^[^%]*%\s*", "", value).strip(" ()-\u2013\u2014:")
            draft.fields[key] = Sourced(p, line, note)
            self.ledger.map(line, title, text, where)
        elif key == "risk":
            self._risk(value, line, text)
        elif key == "timeline" and (found := timeline(value)) is not None:
            draft.fields[key] = Sourced(found[0], line, found[1])
            self.ledger.map(line, title, text, where)
        elif key in _TEXT_FIELDS and value:
            draft.fields[key] = Sourced(" ".join(value.split()), line)
            self.ledger.map(line, title, text, where)
        elif key == "dependencies" and value:
            draft.dependencies = Sourced(value, line)
            self.ledger.use(line)
        elif key == "rollback_time" and (budget := duration(value)) is not None:
            draft.rollback_time = Sourced(budget, line)
            self.ledger.use(line)
        elif key == "team" and value:
            self._team(value, line, text)
        elif key == "lead" and (names := agent_names(value)):
            draft.lead = Sourced(names[0][0], line)
            self.ledger.map(line, title, text, f"{self.where}.lead")
        elif key == "priority" and (word := " ".join(ascii_words(value)[:1])) in PRIORITIES:
            draft.priority = Sourced(word, line)
            self.ledger.map(line, title, text, f"{self.where}.priority")
        elif key == "steps" and value:
            self.ledger.skip(line, title, text, "steps must be a list under the label")
        else:
            self.ledger.skip(line, title, text, f"cannot read a {key.replace('_', ' ')} here")

    def _risk(self, value: str, line: int, text: str) -> None:
        found = risk(value)
        title = self.section.title
        if found.fraction is None:
            self.ledger.skip(line, title, text, "no percentage: no risk taken from this line")
            return
        self.draft.fields["risk"] = Sourced(found.fraction, line, found.rationale or "")
        self.ledger.map(line, title, text, f"{self.where}.risk")
        if found.level in ("low", "medium", "high", "critical"):
            self.draft.fields["risk_level"] = Sourced(found.level, line)
            self.ledger.map(line, title, text, f"{self.where}.risk_level")

    def _team(self, value: str, line: int, text: str) -> None:
        names = agent_names(value)
        for name, lead in names:
            if name not in self.draft.team:
                self.draft.team.append(name)
            if lead and self.draft.lead is None:
                self.draft.lead = Sourced(name, line)
        self.draft.team_line = line
        self.ledger.map(line, self.section.title, text, f"{self.where}.team")


_NOISE = {
    "rollback", "procedure", "procedures", "criteria", "evidence", "success", "metrics",
    "sub", "stream", "substream", "context", "package", "requirements", "validation",
}  # fmt: skip


def match_stream(name: str, streams: Sequence[StreamDraft]) -> StreamDraft | None:
    """The stream a group header such as ``GPU Optimization Rollback`` or ``GPU`` names:
    same words, a unique superset or subset of its title's words, or a close spelling."""
    words = [w for w in ascii_words(name) if w not in _NOISE]
    if not words:
        return None
    number = int(words[-1]) if words[-1].isdigit() and len(words) <= 3 else None
    for stream in streams:
        if ascii_words(stream.title) == words or stream.id == "-".join(words):
            return stream
        if number is not None and stream.number == number:
            return stream
    wanted = set(words)
    close = [s for s in streams if wanted <= set(ascii_words(s.title))]
    if len(close) == 1:
        return close[0]
    close = [s for s in streams if set(ascii_words(s.title)) <= wanted]
    if len(close) == 1:
        return close[0]
    titles = {" ".join(ascii_words(s.title)): s for s in streams}
    best = difflib.get_close_matches(" ".join(words), list(titles), n=1, cutoff=0.8)
    return titles[best[0]] if best else None


_WAITS = re.compile(
    r"\b(after|depends?\s+on|requires?|following|once|blocked\s+by|waits?\s+for|needs?)\b"
)
_NO_DEPENDENCY = re.compile(r"^\s*(none|no\b|minimal|independent|n/?a\b|-\s*$)")
_PARALLEL = re.compile(r"\b(parallel|independent|independently|concurrent|immediately)\b")


def _names(text: str, stream: StreamDraft) -> bool:
    """Whether ``text`` (lower case) names ``stream`` by title, name or area number."""
    if any(len(n) > 2 and n.lower() in text for n in (stream.title, stream.name)):
        return True
    number = stream.number
    return (
        number is not None and re.search(rf"\b(?:focus\s+)?area\s*#?{number}\b", text) is not None
    )


def resolve_dependencies(
    draft: StreamDraft, streams: Sequence[StreamDraft], ledger: Ledger
) -> None:
    """Turn the focus area's Dependencies line into ``depends_on``: named streams when it
    says it waits for them, ``[]`` (reported as assumed) for None/Minimal/parallel."""
    source = draft.dependencies
    title = draft.heading
    if source is None:
        ledger.assume(draft.line, title, "", "no Dependencies line: no dependencies")
        return
    text = strip_emphasis(source.value).lower()
    named = [s for s in streams if s is not draft and _names(text, s)]
    where = f"streams[{draft.id}].depends_on"
    if named and _WAITS.search(text) and not _PARALLEL.search(text):
        for stream in named:
            draft.depends_on.append(Sourced(stream.id, source.line))
        ledger.map(source.line, title, source.value, where)
    elif _NO_DEPENDENCY.match(text) or _PARALLEL.search(text):
        ledger.use(source.line)
        ledger.assume(source.line, title, source.value, "read as no dependencies: depends_on []")
    else:
        ledger.skip(
            source.line,
            title,
            source.value,
            "cannot tell which stream it waits for: depends_on left empty",
        )
