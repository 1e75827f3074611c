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


def repair_mojibake(line: str) -> str:
    """``line`` with every run of characters that spells a valid UTF-8 sequence in cp1252
    (or latin-1) replaced by the character it encodes; everything else is left alone.

    A lone ``é`` or em dash in correctly encoded text is kept: only complete, valid multi-byte
    sequences are decoded, so text that was never garbled passes through unchanged in
    practice (and any garbled text is restored exactly).
    """
    if not any(char in _BYTE_OF for char in line):
        return line
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        lead = _BYTE_OF.get(line[i])
        need = _sequence_length(lead) if lead is not None else 0
        if lead is not None and need:
            seq, j = [lead], i + 1
            while len(seq) < need and j < n:
                byte = _BYTE_OF.get(line[j])
                if byte is None and line[j] == " " and len(seq) == need - 1:
                    # The trailing 0xA0 of an emoji was shown as a no-break space, which
                    # copy and paste often turns into a plain one.
                    byte = _NBSP_BYTE
                if byte is None or not 0x80 <= byte <= 0xBF:
                    break
                seq.append(byte)
                j += 1
            if len(seq) == need:
                try:
                    out.append(bytes(seq).decode("utf-8"))
                except UnicodeDecodeError:  # overlong forms, surrogates: not UTF-8 after all
                    pass
                else:
                    i = j
                    continue
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
