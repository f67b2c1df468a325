"""`reconciler demo` tells the whole story and says so in its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_the_story(tmp_path: Path):
    """The demo accepts, fences a stale manifest, refuses a replay, and exits 0."""
    done = subprocess.run([sys.executable, "-m", "reconciler", "demo", "--workdir",
                           str(tmp_path), "--ready-delay", "0.2"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "intent sfo-baseline-1 succeeded" in out
    assert "intent sfo-upf-2-4 succeeded" in out
    assert "dropped 1:" in out and "ConfigMap/sfo-ran/sfo-site-config" in out
    assert "not higher than 2 of the accepted intent 'sfo-upf-2-4'" in out
    assert "none carried the stale intent" in out
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert {"time", "verb", "path", "intentId", "dryRun", "status"} <= set(log[0])
    assert any(entry["intentId"] == "sfo-upf-2-4" for entry in log)
