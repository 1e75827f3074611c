"""Fixtures shared across the suite: real servers started on free ports for the session.

Loaded as plugins (not imported) so pytest sees their fixtures before any test module
imports the helper modules themselves. ``tests.leak_check`` fails the session when a test
leaves a process running (see its docstring).
"""

pytest_plugins = [
    "tests.servers",
    "tests.servers_postgres",
    "tests.servers_docker",
    "tests.leak_check",
    "tests.procs",
]
