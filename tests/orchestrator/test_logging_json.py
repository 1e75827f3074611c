"""Every line of a JSON diagnostic log is one JSON object, also what libraries log through
the standard ``logging`` module (asyncpg, asyncio, warnings), and none carries a secret."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.test_cli_run import ROOT

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, logging, warnings
    import structlog
    from orchestrator.logging import configure_logging
    from foundation.secrets import remember_secrets

    configure_logging("info", "json")
    remember_secrets(["pw-5f1e2d3c"])
    try:
        raise ConnectionResetError("server closed the connection, dsn pw-5f1e2d3c")
    except ConnectionResetError:
        logging.getLogger("asyncpg.pool").exception("connection terminated\\nunexpectedly")
    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)

    async def main():
        async def boom():
            raise RuntimeError("never retrieved pw-5f1e2d3c")
        task = asyncio.get_running_loop().create_task(boom())
        await asyncio.sleep(0)
        del task
        gc.collect()

    asyncio.run(main())
    structlog.get_logger().info("ended", detail="pw-5f1e2d3c")
    """
)


def test_stdlib_logging_lines_are_json_without_secrets() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # each one is JSON
    assert "pw-5f1e2d3c" not in done.stderr
    by_logger = {line.get("logger"): line for line in lines}
    pool = by_logger["asyncpg.pool"]
    assert pool["level"] == "error" and "ConnectionResetError" in pool["exception"]
    assert "Traceback" in pool["exception"] and "***" in pool["exception"]
    assert "asyncio" in by_logger and "py.warnings" in by_logger
    assert lines[-1]["event"] == "ended" and lines[-1]["detail"] == "***"
