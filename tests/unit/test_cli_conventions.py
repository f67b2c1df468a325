"""What operators expect of a command line: status exit codes, `-o yaml`, quiet pipes,
shell completion, the local cluster kept on loopback, and the site control record."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler import cli, completion
from reconciler.site import control, fence, state

SITE = "edge-a"
SHA = "a" * 40
NOW = "2026-11-27T12:00:00.000000Z"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd=cwd)


def record(**changes: object) -> state.SiteState:
    """A site whose last sync ended ok on a succeeded rollout, changed by `changes`."""
    base = state.SiteState(
        site=SITE,
        accepted=fence.Accepted(id="b", sequence=2, commit=SHA, accepted_at=NOW),
        rollout=state.RolloutRecord(intent_id="b", commit=SHA, phase=state.Outcome.SUCCEEDED,
                                    started_at=NOW, finished_at=NOW),
        last_sync=state.SyncRecord(started_at=NOW, finished_at=NOW, commit=SHA, result="ok"),
        history=(state.HistoryEntry(id="b", sequence=2, commit=SHA,
                                    outcome=state.Outcome.SUCCEEDED, accepted_at=NOW),))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def save(state_dir: Path, site: state.SiteState) -> None:
    state.FileStateStore(state_dir=state_dir, site=SITE).save(site)


# --- status exit codes ---------------------------------------------------------------

FAILED_ROLLOUT = state.RolloutRecord(intent_id="b", commit=SHA, phase=state.Outcome.FAILED,
                                     started_at=NOW, finished_at=NOW, message="wave 10 timed out")


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        ({}, 0, None),
        ({"last_sync": state.SyncRecord(started_at=NOW, commit=SHA, result="running")}, 0, None),
        ({"last_sync": state.SyncRecord(started_at=NOW, commit=SHA, result="aborted",
                                        message="superseded")}, 0, None),
        ({"suspended": state.Suspension(by="alice", at=NOW)}, 0, None),
        ({"last_sync": state.SyncRecord(started_at=NOW, commit=SHA, result="failed",
                                        message="fetch failed: timeout")}, 1,
         "last sync failed: fetch failed: timeout"),
        ({"last_sync": state.SyncRecord(started_at=NOW, commit=SHA, result="refused",
                                        message="sequence 1 is not above 2")}, 1,
         "last sync refused"),
        ({"rollout": FAILED_ROLLOUT}, 1, "rollout of b failed: wave 10 timed out"),
    ],
    ids=["ok", "running", "aborted", "suspended", "sync-failed", "refused", "rollout-failed"],
)
def test_status_exit_code_says_whether_the_site_is_fine(
        tmp_path: Path, changes: dict[str, object], code: int, says: str | None) -> None:
    """`status` exits 1 when the last sync failed or refused, or the rollout failed (the
    reason on stderr), and 0 otherwise, for text, JSON and YAML alike."""
    save(tmp_path, record(**changes))
    for output in ("text", "json", "yaml"):
        done = run("status", "--state-dir", str(tmp_path), "--site", SITE, "-o", output)
        assert done.returncode == code, done.stderr
        if says is None:
            assert done.stderr == ""
        else:
            assert says in done.stderr


def test_status_exit_codes_are_in_its_help() -> None:
    """`status --help` documents its exit codes."""
    done = run("status", "--help")
    assert "exit codes:" in done.stdout
    assert "1  its last sync failed or refused an intent" in done.stdout


def test_missing_site_is_a_usage_error(tmp_path: Path) -> None:
    """A site with no state is exit 2, as before."""
    assert run("status", "--state-dir", str(tmp_path), "--site", SITE).returncode == 2


# --- -o yaml -------------------------------------------------------------------------

def test_status_yaml_is_the_json_document(tmp_path: Path) -> None:
    """`-o yaml` prints the same data as `-o json`, keys in the same order."""
    save(tmp_path, record())
    as_json = json.loads(run("status", "--state-dir", str(tmp_path), "--site", SITE,
                             "-o", "json").stdout)
    text = run("status", "--state-dir", str(tmp_path), "--site", SITE, "-o", "yaml").stdout
    as_yaml = YAML(typ="safe", pure=True).load(text)
    assert as_yaml == as_json
    assert list(as_yaml) == list(as_json)
    assert text.startswith("formatVersion: ")


def test_validate_yaml_is_the_json_report(tmp_path: Path) -> None:
    """`validate -o yaml` is its JSON report as YAML."""
    repo = Path(cli.__file__).parent / "data" / "sample-repo"
    as_json = json.loads(run("validate", str(repo), "-o", "json").stdout)
    as_yaml = YAML(typ="safe", pure=True).load(run("validate", str(repo), "-o", "yaml").stdout)
    as_json.pop("seconds")
    as_yaml.pop("seconds")
    assert as_yaml == as_json


def test_every_command_with_json_output_offers_yaml() -> None:
    """Each command whose -o takes json takes yaml too."""
    tree = cli._completion_tree(cli.build_parser())

    def walk(command: completion.Command) -> None:
        for flag in command.flags:
            if "--output" in flag.names and "json" in flag.choices:
                assert "yaml" in flag.choices, command.name
        for sub in command.commands:
            walk(sub)

    walk(tree)


# --- pipes -----------------------------------------------------------------------------

def test_output_cut_short_by_head_leaves_no_traceback(tmp_path: Path) -> None:
    """`reconciler status -o json | head -1` through a real pipe: no traceback, no
    'Exception ignored' on stderr; the command exits 141, as one SIGPIPE ended."""
    site = record(history=tuple(
        state.HistoryEntry(id=f"i-{n}", sequence=n, commit=SHA, outcome=state.Outcome.REFUSED,
                           finished_at=NOW, message="x" * 4000) for n in range(50)))
    save(tmp_path, site)
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m reconciler status --state-dir "
                       f"{tmp_path} --site {SITE} -o json | head -1"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "{\n"
    assert done.stderr == ""
    assert done.returncode == 141


# --- completion --------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_offers_commands_flags_and_choices() -> None:
    """bash sources the script: `complete -p` names it, and completing offers the
    subcommands, a command's flags, nested commands, and a flag's choices."""
    script = run("completion", "bash").stdout
    probe = script + """
complete -p reconciler
ask() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _reconciler;
        echo "${COMPREPLY[*]}"; }
ask reconciler su
ask reconciler status -o ''
ask reconciler intent ''
ask reconciler intent publish --si
ask reconciler suspend --re
"""
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -o default -F _reconciler reconciler"
    assert lines[1].split() == ["suspend"]
    assert lines[2].split() == ["text", "json", "yaml"]
    assert lines[3].split() == ["publish"]
    assert set(lines[4].split()) == {"--site", "--sign"}
    assert lines[5].split() == ["--reason"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_get_a_script_their_shell_parses(shell: str) -> None:
    """zsh's script wraps the bash one (bashcompinit); fish's lists each flag; each parses
    in its shell when that shell is installed."""
    script = run("completion", shell).stdout
    if shell == "zsh":
        assert script.startswith("#compdef reconciler\n") and "bashcompinit" in script
    else:
        assert "complete -c reconciler -n '__fish_seen_subcommand_from status' -s o " \
               "-l output -x -a 'text json yaml'" in script
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: the script's syntax is not checked")
    done = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_unknown_shell_is_a_usage_error() -> None:
    """`completion tcsh` is refused by the parser (exit 2), naming the choices."""
    done = run("completion", "tcsh")
    assert done.returncode == 2 and "bash" in done.stderr


# --- local-cluster --host -------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_local_cluster_refuses_a_non_loopback_host(host: str) -> None:
    """A --host others may reach is refused (exit 2), saying why and which flag allows it."""
    done = run("local-cluster", "--host", host)
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr
    assert "no authentication" in done.stderr
    assert "--insecure-serve-unauthenticated" in done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    """127.0.0.0/8, ::1 and localhost are loopback."""
    assert cli._loopback(host)


# --- the control record ---------------------------------------------------------------

def test_control_record_round_trips_through_its_file(tmp_path: Path) -> None:
    """request, suspend, resume write the file the agent reads; a second suspend keeps the
    first one's who, when and why."""
    channel = control.FileChannel(state_dir=tmp_path, site=SITE)
    assert channel.read() == control.Control()
    control.request(channel, now=NOW)
    control.suspend(channel, by="alice", reason="maintenance", now=NOW)
    control.suspend(channel, by="bob", reason="other", now="2026-11-28T00:00:00.000000Z")
    found = channel.read()
    assert found == control.Control(requested_at=NOW, suspended=state.Suspension(
        by="alice", at=NOW, reason="maintenance"))
    assert json.loads(channel.path.read_text()) == {
        control.REQUESTED_AT: NOW, control.SUSPENDED_AT: NOW, control.SUSPENDED_BY: "alice",
        control.SUSPEND_REASON: "maintenance"}
    control.resume(channel)
    assert channel.read() == control.Control(requested_at=NOW)


def test_follower_sees_new_requests_and_suspension_changes(tmp_path: Path) -> None:
    """A request older than the first poll is not a trigger (the first pass serves it);
    each later one is, once; a suspension and a resume are each reported once."""
    channel = control.FileChannel(state_dir=tmp_path, site=SITE)
    control.request(channel, now=NOW)
    follower = control.Follower(channel)
    assert follower.poll() == control.Seen(requested=False, suspension=None, changed=False)
    control.request(channel, now="2026-11-27T12:00:01.000000Z")
    assert follower.poll().requested
    assert not follower.poll().requested
    control.suspend(channel, by="alice", reason="", now=NOW)
    seen = follower.poll()
    assert seen.changed and seen.suspension is not None and follower.suspension is not None
    assert not follower.poll().changed
    control.resume(channel)
    assert follower.poll() == control.Seen(requested=False, suspension=None, changed=True)


def test_follower_keeps_the_last_suspension_when_the_record_breaks(tmp_path: Path) -> None:
    """A corrupt control record neither suspends nor resumes the site."""
    channel = control.FileChannel(state_dir=tmp_path, site=SITE)
    control.suspend(channel, by="alice", reason="", now=NOW)
    follower = control.Follower(channel)
    follower.poll()
    channel.path.write_text("{not json")
    seen = follower.poll()
    assert seen.suspension is not None and not seen.changed


def test_follower_reports_a_resume_that_came_while_the_agent_was_down(tmp_path: Path) -> None:
    """The state says suspended, the control record no longer does: the first poll says
    the suspension changed, so the agent records the resume."""
    channel = control.FileChannel(state_dir=tmp_path, site=SITE)
    follower = control.Follower(channel, suspended=state.Suspension(by="a", at=NOW))
    assert follower.poll() == control.Seen(requested=False, suspension=None, changed=True)


def test_suspend_and_resume_commands_write_the_control_record(tmp_path: Path) -> None:
    """`suspend` and `resume` through the real command line, then `status` shows it."""
    save(tmp_path, record())
    flags = ["--state-dir", str(tmp_path), "--site", SITE]
    done = run("suspend", *flags, "--reason", "change freeze", "--by", "noc")
    assert done.returncode == 0, done.stderr
    assert "suspended by noc" in done.stdout
    shown = run("status", *flags)
    assert shown.returncode == 0
    assert "Suspended:     by noc" in shown.stdout and "change freeze" in shown.stdout
    as_json = json.loads(run("status", *flags, "-o", "json").stdout)
    assert as_json["suspended"]["by"] == "noc"
    assert run("resume", *flags).stdout.strip() == f"site {SITE}: resumed"
    assert "Suspended:" not in run("status", *flags).stdout


def test_state_failing_names_the_reason() -> None:
    """state.failing() is None for a fine site and names the failure otherwise."""
    assert state.failing(record()) is None
    assert state.failing(record(rollout=FAILED_ROLLOUT)) == \
        "rollout of b failed: wave 10 timed out"
