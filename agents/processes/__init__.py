"""Step processes: starting them contained, and ending them with everything they started.

Owns :mod:`~agents.processes.containment` (the daemon side: spawn in a session with a step
token, register with the watchdog, end the tree) and :mod:`~agents.processes.watchdog` (the
pure-stdlib process that outlives a killed daemon just long enough to end its steps).

Must not import :mod:`orchestrator`; the watchdog module imports nothing of the project at all.
"""
