"""Web views of runs: the daemon's dashboard (a Starlette app), a server-side SVG Gantt
timeline and a self-contained run report.

Owns rendering runs for browsers. Reads runs through the daemon's handlers and the run
store; the daemon serves it (``--http``). Must not be imported by what a run is made of
(scheduler, runs, events, store, coordination: an ``import-linter`` contract), nor by
``agents``, ``context_packages``, ``streams`` or ``foundation``.
"""
