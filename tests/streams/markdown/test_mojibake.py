"""The mis-encoding repair: only runs that really are UTF-8 misread as cp1252 change."""
# ruff: noqa: RUF001  (the test data is the ambiguous characters themselves)

from __future__ import annotations

import pytest

from streams.markdown._document import parse
from streams.markdown._text import repair_mojibake


@pytest.mark.parametrize(
    "text",
    [
        "3 × 4 matrix",
        "Ø 5mm drill",
        "café, naïve, Größe",
        "«Ü» and ½ cup",
        "£5 – €3 — “quoted” ‘too’ …",
        "Ä Ö Ü ß Þ à",
        "Straße 12 × 3",
    ],
)
def test_correct_text_is_never_changed(text: str) -> None:
    assert repair_mojibake(text) == text


@pytest.mark.parametrize(
    ("garbled", "meant"),
    [
        ("cafÃ© ok", "café ok"),
        ("â€” dash", "— dash"),
        ("itâ€™s", "it’s"),
        ("â”œâ”€â”€ tree", "├── tree"),
        ("ðŸ§  brain", "🧠 brain"),  # the emoji's trailing no-break space became a space
        ("Ã— sign", "× sign"),
        ("naïveâ€”x", "naïve—x"),  # a correct letter beside a misread dash
    ],
)
def test_misread_runs_are_repaired(garbled: str, meant: str) -> None:
    assert repair_mojibake(garbled) == meant


def test_a_valid_utf8_document_without_mojibake_keeps_every_line() -> None:
    text = "# Plan × 2\n\n### 1. Ø CUTTER (HIGH PRIORITY)\n- Größe: 3 × 4\n"
    document = parse(text)
    assert document.repaired == ()
    lines = [line.text for s in document.sections for line in s.lines]
    assert "- Größe: 3 × 4" in lines
