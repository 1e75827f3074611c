"""What a plan's history predicts, before it runs: ``orchestrator analyze``.

Owns the strategic decision matrix (:mod:`.matrix`: per stream a success probability from
a Beta posterior, :mod:`._beta`; a timeline estimate from recorded service times; the
expected makespan and critical path from the real scheduler on a virtual clock,
:mod:`._sim`; the table and its JSON, :mod:`._render`) and how well past predictions held
(:mod:`.calibration`: Brier score, reliability table, real against predicted makespans).
Modules prefixed ``_`` are private to this package.

Reads history from the run store and simulates with the scheduler and the in-process
coordinator; must not import the daemon, the CLI, the MCP server or the web dashboard (they
import it), nor run anything real. ``agents``, ``context_packages``, ``streams`` and
``foundation`` never import it (the import order ``import-linter`` enforces).
"""

from orchestrator.analysis.calibration import (
    Bucket,
    Calibration,
    Prediction,
    RealRun,
    calibrate,
    calibration_json,
    real_makespans,
    render_calibration,
)
from orchestrator.analysis.matrix import (
    DEFAULT_PRIOR_WEIGHT,
    HISTORY_SCOPES,
    Beta,
    HistoryScope,
    PathStep,
    PlanAnalysis,
    Schedule,
    StepTiming,
    StreamEstimate,
    TimelineEstimate,
    analysis_json,
    analyze,
    beta_cdf,
    check_min_confidence,
    estimate_streams,
    load_history,
    percentile,
    posterior,
    render_analysis,
)

__all__ = [
    "DEFAULT_PRIOR_WEIGHT",
    "HISTORY_SCOPES",
    "Beta",
    "Bucket",
    "Calibration",
    "HistoryScope",
    "PathStep",
    "PlanAnalysis",
    "Prediction",
    "RealRun",
    "Schedule",
    "StepTiming",
    "StreamEstimate",
    "TimelineEstimate",
    "analysis_json",
    "analyze",
    "beta_cdf",
    "calibrate",
    "calibration_json",
    "check_min_confidence",
    "estimate_streams",
    "load_history",
    "percentile",
    "posterior",
    "real_makespans",
    "render_analysis",
    "render_calibration",
]
