"""Fixtures for context-package tests: the offline tokenizer and the phase-2 example plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.plans import load_plan
from context_packages import TiktokenTokenizer, cl100k_base
from streams.model import Plan

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def tokenizer() -> TiktokenTokenizer:
    return cl100k_base()


@pytest.fixture(scope="session")
def phase2() -> Plan:
    return load_plan(ROOT / "examples" / "phase2.yaml")
