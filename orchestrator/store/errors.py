"""Errors of the run store; they belong under ``OrchestratorError`` in the one tree::

    OrchestratorError
    └── StoreError              the run store at ``where`` cannot do what was asked
        └── StoreUnavailable    it cannot be reached, was lost, or did not answer in time
            └── DiskFull        its disk is full (SQLITE_FULL, ENOSPC): writes fail until
                                space is freed, then succeed again

``where`` never carries a secret: a PostgreSQL DSN appears only as
:func:`orchestrator.store.redact_dsn` writes it, and the password is scrubbed from every
``reason`` taken from a driver's message.
"""

from __future__ import annotations

from foundation.errors import OrchestratorError

__all__ = ["DiskFull", "StoreError", "StoreUnavailable"]


class StoreError(OrchestratorError):
    """The run store at ``where`` (secrets removed) failed: ``reason``, and what to do (``fix``)."""

    def __init__(self, where: str, reason: str, fix: str = "") -> None:
        self.where = where
        self.reason = reason
        self.fix = fix
        text = f"run store {where}: {reason}"
        super().__init__(f"{text} (fix: {fix})" if fix else text)


class StoreUnavailable(StoreError):
    """The store could not be reached, the connection was lost, or it did not answer in time.

    The call did not take effect or its outcome is unknown; every write of the store is
    idempotent except :meth:`~orchestrator.store.RunStore.create_run`, so retrying is safe.
    """


class DiskFull(StoreUnavailable):
    """The store's disk is full: nothing more can be written until space is freed; what it
    has stored is kept, and writing again after that is safe."""
