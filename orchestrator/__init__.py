"""The orchestrator: scheduler, coordination backends, event log, CLI and settings."""

from foundation.errors import OrchestratorError

__version__ = "0.1.0"

__all__ = ["OrchestratorError", "__version__"]
