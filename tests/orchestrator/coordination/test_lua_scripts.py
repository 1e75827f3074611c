"""The Redis backend's Lua scripts ship in the wheel and load from the installed package.

The wheel is built from a copy of the sources (so the checkout gains no ``build/``), then
unpacked, which is what installing it does, and a fresh interpreter imports the backend
from there, not from this checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator.coordination.redis import _scripts

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ["acquire", "drop", "fast", "ops", "prelude", "renew", "snapshot", "state_cas"]


def test_every_script_is_read_from_its_lua_file() -> None:
    lua = ROOT / "orchestrator" / "coordination" / "redis" / "lua"
    assert sorted(p.stem for p in lua.glob("*.lua")) == SCRIPTS

    def text(name: str) -> str:
        return (lua / f"{name}.lua").read_text(encoding="utf-8")

    prelude = text("prelude")
    for name in ["renew", "snapshot"]:
        assert getattr(_scripts, name.upper()) == prelude + text(name)
    full = prelude + text("acquire") + text("drop") + text("ops")
    assert text("fast") + "local function full()\n" + full + "end\nreturn full()\n" == _scripts.OPS
    assert (lua / "state_cas.lua").read_text(encoding="utf-8") == _scripts.STATE_CAS


@pytest.mark.slow
def test_the_wheel_carries_the_scripts_and_the_installed_package_loads_them(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    for package in ["orchestrator", "agents", "context_packages", "streams", "foundation"]:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    (wheel,) = dist.glob("orchestrator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for name in SCRIPTS:
        assert f"orchestrator/coordination/redis/lua/{name}.lua" in names

    probe = (
        "import json, orchestrator.coordination.redis._scripts as s; "
        "print(json.dumps({'file': s.__file__, 'ops': s.OPS, 'cas': s.STATE_CAS}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    loaded = json.loads(out.stdout)
    assert Path(loaded["file"]).is_relative_to(tmp_path / "site")
    assert loaded["ops"] == _scripts.OPS
    assert "redis.call('HGET', ARGV[1] .. 's', field)" in loaded["cas"]
