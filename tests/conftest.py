"""Fixtures shared across the suite: real servers started on free ports for the session.

Loaded as plugins (not imported) so pytest sees their fixtures before any test module
imports the helper modules themselves.
"""

pytest_plugins = ["tests.servers", "tests.servers_postgres", "tests.servers_docker"]
