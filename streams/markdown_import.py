"""The Markdown import's public functions, where they have always been imported from; the
code lives in the :mod:`streams.markdown` package."""

from __future__ import annotations

from streams.markdown.importer import (
    ImportReport,
    ImportResult,
    ReportItem,
    decode_markdown,
    import_markdown,
)

__all__ = ["ImportReport", "ImportResult", "ReportItem", "decode_markdown", "import_markdown"]
