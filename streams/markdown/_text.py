"""Text helpers of the Markdown import: mojibake repair, lines, slugs, labels and list items.

Users' phase documents often went through a tool that read UTF-8 bytes as cp1252 (or
latin-1), so an emoji such as U+1F9E0 arrives as ``ðŸ§`` plus a no-break space and a box-drawing
``├──`` as ``â”œâ”€â”€``. :func:`repair_mojibake` reverses that per line, so line numbers stay
those of the user's file.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "IDENTIFIER",
    "ascii_words",
    "clean_title",
    "decode_cp1252",
    "list_item",
    "repair_mojibake",
    "shorten",
    "slugify",
    "split_label",
    "split_lines",
    "strip_emphasis",
]

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _cp1252_chars() -> tuple[str, ...]:
    chars: list[str] = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            # Undefined in cp1252 (0x81, 0x8D, 0x8F, 0x90, 0x9D): decoders that fall back
            # to latin-1 (Windows does) give the C1 control of the same number.
            chars.append(chr(byte))
    return tuple(chars)


# The character each byte stands for in cp1252 (latin-1 where cp1252 defines none).
_CP1252_CHARS = _cp1252_chars()
# The byte behind each character that UTF-8 misread as cp1252 or latin-1 shows.
_BYTE_OF = {char: byte for byte, char in enumerate(_CP1252_CHARS) if byte >= 0x80}
_BYTE_OF.update({chr(byte): byte for byte in range(0x80, 0xA0) if chr(byte) not in _BYTE_OF})
_NBSP_BYTE = 0xA0


def _sequence_length(byte: int) -> int:
    """Bytes in the UTF-8 sequence ``byte`` starts (0: it cannot start one)."""
    if 0xC2 <= byte <= 0xDF:
        return 2
    if 0xE0 <= byte <= 0xEF:
        return 3
    if 0xF0 <= byte <= 0xF4:
        return 4
    return 0


# cp1252 characters that a mis-decoded UTF-8 sequence shows and correct text rarely holds
# next to each other: the lead bytes' letters and the C1/cp1252 specials.
_SUSPICIOUS = frozenset(
    "\u00c2\u00c3\u00c5\u00c4\u00c6\u00ce\u00cf\u00d0\u00d1\u00e2\u00f0"
    "\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152"
    "\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a"
    "\u0153\u017e\u0178"
) | frozenset(chr(c) for c in range(0x80, 0xA0))


def _sequence(line: str, i: int) -> tuple[str, int] | None:
    """The character the UTF-8 sequence spelled in cp1252 at ``line[i]`` encodes and the
    index after it, or None when no complete, valid sequence starts there."""
    lead = _BYTE_OF.get(line[i])
    need = _sequence_length(lead) if lead is not None else 0
    if lead is None or not need:
        return None
    seq, j, spaced = [lead], i + 1, False
    while len(seq) < need and j < len(line):
        byte = _BYTE_OF.get(line[j])
        if byte is None and line[j] == " " and len(seq) == need - 1 and need >= 3:
            # The trailing 0xA0 of a 3- or 4-byte character (an emoji) shown as a no-break
            # space, which copy and paste often turns into a plain one. Never for 2-byte
            # sequences: `3 \u00d7 4` and `\u00d8 5mm` are correct text.
            byte, spaced = _NBSP_BYTE, True
        if byte is None or not 0x80 <= byte <= 0xBF:
            return None
        seq.append(byte)
        j += 1
    if len(seq) < need:
        return None
    try:
        char = bytes(seq).decode("utf-8")
    except UnicodeDecodeError:  # overlong forms, surrogates: not UTF-8 after all
        return None
    if spaced and not unicodedata.category(char).startswith("S"):
        return None  # only a symbol (an emoji) is worth guessing a lost no-break space for
    return char, j


def _run(line: str, i: int) -> tuple[str, int] | None:
    """The maximal run of mis-decoded sequences at ``line[i]``, decoded, and the index after
    it: None unless every character of the run round-trips (cp1252 bytes, then UTF-8)."""
    out: list[str] = []
    j = i
    while j < len(line) and line[j] in _BYTE_OF:
        found = _sequence(line, j)
        if found is None:
            return None
        out.append(found[0])
        j = found[1]
    return ("".join(out), j) if out else None


def repair_mojibake(line: str) -> str:
    """``line`` with each run of characters that is UTF-8 misread as cp1252 (or latin-1)
    replaced by the characters it spells; everything else is left alone.

    Decided per run of non-ASCII characters, by round-tripping: the run's characters are
    taken back to the bytes cp1252 gives them and decoded as UTF-8; the run is replaced only
    when all of it decodes (fewer characters, each the one the author typed). A run that
    does not decode as a whole keeps its correct characters, and only the sequences in it
    that show the marks of mis-decoding (a lead-byte letter such as ``Ã``, ``â`` or ``ð``
    beside cp1252 punctuation or a C1 control) are decoded. Correct text such as
    ``3 \u00d7 4 matrix``, ``\u00d8 5mm``, ``«Ü»`` or ``café`` is never changed.
    """
    if not any(char in _BYTE_OF for char in line):
        return line
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] not in _BYTE_OF:
            out.append(line[i])
            i += 1
            continue
        whole = _run(line, i)
        if whole is not None:
            out.append(whole[0])
            i = whole[1]
            continue
        # A run mixing correct characters with mis-decoded ones: decode only what is
        # clearly mojibake, character sequence by sequence.
        while i < n and line[i] in _BYTE_OF:
            found = _sequence(line, i)
            if found is not None and any(c in _SUSPICIOUS for c in line[i : found[1]]):
                out.append(found[0])
                i = found[1]
            else:
                out.append(line[i])
                i += 1
    return "".join(out)


def decode_cp1252(data: bytes) -> str:
    """``data`` read as cp1252, latin-1 for the bytes cp1252 leaves undefined: never fails."""
    return "".join(_CP1252_CHARS[byte] for byte in data)


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as an editor numbers them: split at LF only (CRLF's CR dropped),
    so characters such as U+0085 that a misread file may hold never add a line."""
    lines = text.removeprefix("\ufeff").split("\n")
    return [line.removesuffix("\r") for line in lines]


_EMPHASIS = re.compile(r"\*\*|__")


def strip_emphasis(text: str) -> str:
    """``text`` without Markdown bold markers (``**``, ``__``), trimmed."""
    return _EMPHASIS.sub("", text).strip()


def clean_title(text: str) -> str:
    """A heading's words: emphasis, leading emoji and symbols, trailing ``#`` and ``:`` gone."""
    text = strip_emphasis(text).rstrip("#").strip().rstrip(":").strip()
    start = 0
    while start < len(text) and not text[start].isalnum():
        start += 1
    return text[start:]


def ascii_words(text: str) -> list[str]:
    """Lower-case ASCII words of ``text`` (accents folded, other characters separate)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.findall(r"[a-z0-9]+", folded.lower())


def slugify(text: str, *, max_length: int = 64) -> str:
    """``Redis Authentication`` -> ``redis-authentication``: ASCII words joined by ``-``,
    cut at a word boundary within ``max_length``; empty when ``text`` has no such words."""
    slug = ""
    for word in ascii_words(text):
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    return slug


def shorten(text: str, width: int = 72) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


_LABEL = re.compile(r"^\s*(?:[-*+]\s+)?([A-Za-z][^:]{0,80}?)\s*:\s*(.*)$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(.*\S)\s*$")
_MAX_LABEL_WORDS = 6


def split_label(text: str) -> tuple[str, str] | None:
    """``- **Risk Assessment**: Low (15%)`` -> ``("risk assessment", "Low (15%)")``.

    The label comes back as lower-case words separated by single spaces; None when the line
    is not ``label: value`` (a label has at most six words, so prose with a colon is not one).
    """
    match = _LABEL.match(strip_emphasis(text))
    if match is None:
        return None
    label = " ".join(re.findall(r"[a-z0-9]+", match.group(1).lower()))
    if not label or len(label.split()) > _MAX_LABEL_WORDS:
        return None
    return label, (match.group(2) or "").strip()


def list_item(text: str) -> str | None:
    """The text of a bullet (``- x``) or numbered (``1. x``) item, else None."""
    match = _LIST_ITEM.match(text)
    return strip_emphasis(match.group(1)) if match else None
