"""Importing Markdown phase plans (``orchestrator import``): the reader of each family of
shapes, the mojibake repair, the mapping report and the YAML writer.

The public entry points are in :mod:`streams.markdown.importer` (also importable as
:mod:`streams.markdown_import`); the ``_``-prefixed modules are its parts. This package
imports nothing on its own, so that :mod:`streams.agent_definitions` can use its text
helpers without loading the importer.

Must not import ``orchestrator``, ``agents`` or ``context_packages`` (the plan it writes is
checked by :mod:`streams`' own loader); only ``streams`` and ``foundation``.
"""
