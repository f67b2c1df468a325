"""`reconciler status`: the rollout per wave, the history, and the live --watch view."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

from reconciler.site import fence, state

SITE = "edge-a"
SHA = "a" * 40


def write_state(state_dir: Path) -> state.FileStateStore:
    store = state.FileStateStore(state_dir=state_dir, site=SITE)
    now = state.now()
    site = state.SiteState(
        site=SITE,
        accepted=fence.Accepted(id="b", sequence=2, commit=SHA, accepted_at=now),
        rollout=state.RolloutRecord(intent_id="b", commit=SHA, phase=state.Outcome.PROGRESSING,
                                    started_at=now, waves=(
            state.WaveRecord(wave=0, phase=state.WavePhase.HEALTHY, objects=("Namespace/ran",)),
            state.WaveRecord(wave=10, phase=state.WavePhase.WAITING,
                             objects=("WorkloadCluster/ran/wc",)),
            state.WaveRecord(wave=20, phase=state.WavePhase.PENDING,
                             objects=("NetworkFunction/ran/upf",)))),
        history=(state.HistoryEntry(id="a", sequence=1, commit=SHA,
                                    outcome=state.Outcome.ABORTED, accepted_at=now,
                                    finished_at=now, superseded_by="b",
                                    message="Aborted (superseded by b)"),
                 state.HistoryEntry(id="b", sequence=2, commit=SHA,
                                    outcome=state.Outcome.PROGRESSING, accepted_at=now)),
    )
    store.save(dataclasses.replace(site))
    return store


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "status", *args],
                          capture_output=True, text=True, timeout=30, check=False)


def test_status_shows_each_wave_and_marks_the_current_one(tmp_path: Path):
    """Each wave shows its phase and objects; the one in progress is marked."""
    write_state(tmp_path)
    done = status("--state-dir", str(tmp_path), "--site", SITE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("-> wave 10") and "waiting" in line
               and "WorkloadCluster/ran/wc" in line for line in lines)
    assert any("wave 20" in line and "pending" in line and "->" not in line for line in lines)
    history = done.stdout.split("History:")[1]
    assert "Aborted" in history and "superseded by b" in history


def test_watch_redraws_until_interrupted(tmp_path: Path):
    """--watch prints a fresh view every second and exits 0 on Ctrl-C."""
    write_state(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "status", "--state-dir", str(tmp_path),
         "--site", SITE, "--watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frames = 0
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Every 1s: reconciler status --site edge-a"):
            frames += 1
            if frames == 2:
                break
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert frames == 2
