"""The review tooling we ship: the pre-commit hooks and the example pull-request workflow."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler import cli, contract
from tests import gitrepo

REPO = Path(__file__).resolve().parents[2]  # the checkout: the hooks and the examples
HOOKS = REPO / ".pre-commit-hooks.yaml"
EXAMPLES = REPO / "examples" / "github-actions"
WORKFLOW = EXAMPLES / "fleet-pull-request.yaml"
SCRIPT = EXAMPLES / "plan-changed-sites.sh"
BIN = str(Path(sys.executable).parent)
SFO_MANIFEST = "sites/edge-sfo-01/manifests/30-configmap.yaml"


def run(command: list[str], *, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A command as a hook or a CI step runs it: `reconciler` found on PATH."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **gitrepo._ENV,
                                            "PATH": f"{BIN}:{os.environ['PATH']}", **env})


def hooks() -> list[dict[str, object]]:
    loaded: list[dict[str, object]] = YAML(typ="safe").load(HOOKS.read_text())
    return loaded


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(contract.sample_repo_dir(), root)
    return root


def test_pre_commit_hooks_run_validate_on_the_whole_repository(tmp_path: Path) -> None:
    """Each hook runs `reconciler validate` on the repository, not on the file names, and
    triggers on YAML under sites/ and crds/ only."""
    found = hooks()
    assert [h["id"] for h in found] == ["reconciler-validate", "reconciler-validate-strict"]
    root = checkout(tmp_path)
    for hook in found:
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        pattern = re.compile(str(hook["files"]))
        assert pattern.search(SFO_MANIFEST) and pattern.search("crds/x.yml")
        assert not pattern.search("README.md") and not pattern.search("docs/sites/a.yaml")
        done = run(shlex.split(str(hook["entry"])), cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("ok: 2 sites")


def test_pre_commit_hooks_fail_on_a_broken_manifest_and_strict_on_a_stale_id(
        tmp_path: Path) -> None:
    """A type error fails both hooks at its line; a manifest left on an old intent id
    fails only the strict one."""
    root = checkout(tmp_path)
    by_id = {h["id"]: shlex.split(str(h["entry"])) for h in hooks()}
    stale = root / SFO_MANIFEST
    stale.write_text(stale.read_text().replace("intent-id: sfo-baseline-1",
                                               "intent-id: sfo-baseline-0"))
    assert run(by_id["reconciler-validate"], cwd=root).returncode == 0
    strict = run(by_id["reconciler-validate-strict"], cwd=root)
    assert strict.returncode == 1
    assert f"{SFO_MANIFEST}:10:5: error: ConfigMap/sfo-ran/sfo-site-config" in strict.stdout
    nf = root / "sites/edge-sfo-01/manifests/20-networkfunctions.yaml"
    nf.write_text(nf.read_text().replace("replicas: 2", "replicas: two", 1))
    for entry in by_id.values():
        done = run(entry, cwd=root)
        assert done.returncode == 1
        assert ("sites/edge-sfo-01/manifests/20-networkfunctions.yaml:18:3: error: "
                "NetworkFunction/sfo-ran/sfo-upf: $.spec.replicas:") in done.stdout


def test_workflow_runs_only_commands_the_command_line_accepts() -> None:
    """Every `reconciler` command in the example workflow parses with today's flags, and
    the workflow calls the plan script shipped beside it."""
    workflow = YAML(typ="safe").load(WORKFLOW.read_text())
    steps = workflow["jobs"]["review"]["steps"]
    scripts = [step["run"] for step in steps if "run" in step]
    commands = [line.strip() for text in [*scripts, SCRIPT.read_text()]
                for line in text.replace("\\\n", " ").splitlines()
                if line.strip().startswith("reconciler ")]
    assert any(c.startswith("reconciler validate") for c in commands)
    assert any(c.startswith("reconciler plan") for c in commands)
    parser = cli.build_parser()
    for command in commands:
        command = re.split(r" (?:>>?|\|\|?) ", command)[0]  # the shell's part ends here
        words = shlex.split(re.sub(r"\$\{\{[^}]*\}\}|\"?\$\w+\"?", "x", command))[1:]
        parser.parse_args(words)  # exits 2 (SystemExit) on a flag that does not exist
    assert any("plan-changed-sites.sh" in script for script in scripts)
    assert workflow["on"]["pull_request"]["paths"] == ["sites/**", "crds/**"]


@pytest.fixture
def pull_request(tmp_path: Path) -> gitrepo.GitRemote:
    """A fleet repository with a `main` branch and a pull-request branch checked out."""
    remote = gitrepo.GitRemote(tmp_path / "git")
    remote.copy_from(contract.sample_repo_dir())
    remote.commit_and_push("Baseline")
    gitrepo.git("checkout", "-q", "-b", "pr", cwd=remote.work)
    return remote


def test_plan_script_plans_the_sites_a_pull_request_changes(
        pull_request: gitrepo.GitRemote) -> None:
    """A pull request that publishes a new intent for one site gets one plan, for that
    site only, saying the intent would be accepted."""
    done = run([str(EXAMPLES / "plan-changed-sites.sh")], cwd=pull_request.work)
    assert done.returncode != 0 and "usage" in done.stderr
    code = cli.main(["-q", "intent", "publish", "--repo", str(pull_request.work),
                     "--site", "edge-sfo-01", "--id", "sfo-upf-2-4", "-m", "UPF 2.4"])
    assert code == 0
    done = run(["sh", str(SCRIPT), "main", "plan.md"], cwd=pull_request.work,
               RECONCILER_STATE_DIR=str(pull_request.work.parent / "state"))
    assert done.returncode == 0, done.stderr
    comment = (pull_request.work / "plan.md").read_text()
    assert comment.startswith("## reconciler plan\n")
    assert "### reconciler plan: site `edge-sfo-01`" in comment
    assert "edge-nyc-02" not in comment
    assert "**Intent `sfo-upf-2-4` (sequence 2) would be accepted.**" in comment


def test_plan_script_plans_every_site_when_crds_change_and_fails_on_a_refusal(
        pull_request: gitrepo.GitRemote, tmp_path: Path) -> None:
    """A CRD change concerns every site; a site whose recorded state refuses the change
    makes the script fail, after writing the whole comment."""
    crd = pull_request.work / "crds/workloadclusters.telco.example.com.yaml"
    crd.write_text(crd.read_text() + "# reviewed\n")
    gitrepo.restamp(pull_request, site="edge-nyc-02", new_id="nyc-replay", sequence=0)
    pull_request.commit("a CRD note, and a replayed intent for nyc")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "edge-nyc-02.json").write_text(_synced_state(pull_request, tmp_path))
    done = run(["sh", str(SCRIPT), "main", "plan.md"], cwd=pull_request.work,
               RECONCILER_STATE_DIR=str(state_dir))
    assert done.returncode == 1, done.stderr
    comment = (pull_request.work / "plan.md").read_text()
    assert "### reconciler plan: site `edge-sfo-01`" in comment
    assert "### reconciler plan: site `edge-nyc-02`" in comment
    assert "**Intent `nyc-replay` (sequence 0) would be REFUSED:**" in comment


def _synced_state(remote: gitrepo.GitRemote, tmp_path: Path) -> str:
    """The state file of edge-nyc-02 after a sync of `main` (its baseline, sequence 1)."""
    from reconciler.site import pipeline, state
    from tests import fakes

    store = state.FileStateStore(state_dir=tmp_path / "synced", site="edge-nyc-02")
    options = pipeline.Options(url=remote.url, site="edge-nyc-02",
                                cache_dir=tmp_path / "cache")
    with store.lock():
        result = pipeline.sync_once(options=options, store=store, target=fakes.FakeCluster())
    assert result.ok, result.message
    return store.path.read_text()
