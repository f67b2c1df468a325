"""`reconciler demo` tells the whole story and says so in its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_the_story(tmp_path: Path):
    """The demo rolls out, aborts a superseded rollout before its wave 20, prunes, refuses a
    replay, and exits 0; its request log shows the aborted intent's NFs were never sent."""
    done = subprocess.run([sys.executable, "-m", "reconciler", "demo", "--workdir",
                           str(tmp_path), "--ready-delay", "0.3s"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Succeeded: wave 0 healthy, wave 10 healthy, wave 20 healthy" in out
    assert "sfo-upf-2-4: Aborted (superseded by sfo-upf-2-5)" in out
    assert "pruned after success: ConfigMap/sfo-ran/sfo-site-config" in out
    assert "not higher than 3 of the accepted intent 'sfo-upf-2-5'" in out
    assert "Step 9: Done\n" in out
    # The manager's side is the real thing: `intent publish` commits, `plan` reviews.
    assert "      accept: new intent 'sfo-upf-2-5' supersedes 'sfo-upf-2-4'\n" in out
    assert "      wave 20   configured NetworkFunction/sfo-ran/sfo-upf\n" in out
    assert "      prune      ConfigMap/sfo-ran/sfo-site-config\n" in out
    trailers = subprocess.run(
        ["git", "-C", str(tmp_path / "manager"), "log", "--format=%(trailers:key=Intent-Id,"
         "valueonly)%(trailers:key=Site,valueonly)"], capture_output=True, text=True,
        check=True).stdout.split()
    assert trailers == ["sfo-baseline-1", "edge-sfo-01", "sfo-upf-2-5", "edge-sfo-01",
                        "sfo-upf-2-4", "edge-sfo-01"]
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert {"time", "verb", "path", "intentId", "dryRun", "status"} <= set(log[0])
    assert not [e for e in log if e["intentId"] == "sfo-upf-2-4" and e["kind"] == "NetworkFunction"]
    assert any(e["intentId"] == "sfo-upf-2-5" and e["kind"] == "NetworkFunction" for e in log)
