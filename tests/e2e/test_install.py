"""The project installs every way the docs say, and the installed command works anywhere.

A wheel built from the working tree goes into a fresh virtual environment (its
dependencies from the package index, pinned by constraints.txt, through pip's cache), and
`validate`, `sync` (against the embedded cluster) and `demo` run from a folder outside the
repository, so nothing can come from the checkout. Then the same environment is
reinstalled from a Git URL, as the example workflow and the pre-commit hooks install it,
and the hooks' entries run. A `sync` that is PID 1 in its own PID namespace, as in a
container without an init, stops on SIGTERM within 5 seconds.

About a minute with a warm pip cache (pip's own, shared across runs); about two cold.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = [pytest.mark.e2e, pytest.mark.install]

CHECKOUT = Path(__file__).resolve().parents[2]
SITE = "edge-sfo-01"
_GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_CONFIG_NOSYSTEM": "1"}


@dataclass(frozen=True)
class Installed:
    """A virtual environment outside the checkout with the project installed in it."""

    venv: Path
    source: Path  # a Git repository holding the working tree as one commit
    outside: Path  # a folder outside the checkout to run commands from

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        return {**env, **_GIT_ENV, "PATH": f"{self.venv / 'bin'}:{env['PATH']}"}

    def run(self, *args: str, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """A command from the environment's bin/, run from outside the checkout."""
        return subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]],
                              cwd=cwd or self.outside, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def pip(self, *args: str) -> None:
        done = self.run("python", "-m", "pip", "install", "-q",
                        "-c", str(self.source / "constraints.txt"), *args, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr


def _copy_working_tree(dest: Path) -> None:
    """The files Git would see, as they are now, uncommitted changes included."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=CHECKOUT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = CHECKOUT / name
        if name.startswith("tests/corpus/") or not src.is_file():  # big, and not shipped
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV},
                   capture_output=True, check=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The working tree as a wheel, installed in a fresh virtual environment."""
    root = tmp_path_factory.mktemp("install")
    source, dist, outside = root / "source", root / "dist", root / "outside"
    outside.mkdir()
    _copy_working_tree(source)
    _git("init", "-q", "-b", "main", cwd=source)
    _git("add", "-A", cwd=source)
    _git("commit", "-q", "-m", "the working tree", cwd=source)
    # The wheel, built as pip builds it (isolated, setuptools pinned by the constraints).
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        env={**os.environ, "PIP_CONSTRAINT": str(source / "constraints.txt")},
        capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(dist.glob("intent_reconciler-*.whl"))
    assert len(wheels) == 1
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    done = Installed(venv=root / "venv", source=source, outside=outside)
    done.pip(str(wheels[0]))
    return done


def _where(installed: Installed) -> Path:
    """Where the installed package's data is, as the installed package finds it."""
    done = installed.run("python", "-c",
                         "from reconciler import contract; print(contract.data_dir())")
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def fleet(installed: Installed) -> Path:
    """A fleet repository made from the sample repository the installed package ships."""
    repo = installed.outside / "fleet"
    shutil.copytree(_where(installed) / "sample-repo", repo)
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "Baseline", cwd=repo)
    return repo


@pytest.fixture
def local_cluster(installed: Installed, tmp_path: Path,
                  request: pytest.FixtureRequest) -> Iterator[Path]:
    """`reconciler local-cluster` from the installed package; yields its kubeconfig.
    Parametrize indirectly with the ready delay."""
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [str(installed.venv / "bin" / "reconciler"), "local-cluster", "--kubeconfig-out",
         str(kubeconfig), "--ready-delay", str(getattr(request, "param", "0.2s"))],
        cwd=installed.outside, env=installed.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not kubeconfig.exists() or not kubeconfig.read_text().strip():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the local cluster did not start in 60 s"
            time.sleep(0.1)
        yield kubeconfig
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_wheel_ships_its_data_and_uses_it_from_site_packages(installed: Installed) -> None:
    """The installed package finds its schemas and sample repository inside its own
    site-packages, not in the checkout it was built from."""
    data = _where(installed)
    assert data.is_relative_to(installed.venv) and not data.is_relative_to(CHECKOUT)
    assert (data / "schemas" / "intent.schema.json").is_file()
    assert (data / "sample-repo" / "sites" / SITE / "intent.yaml").is_file()
    done = installed.run("python", "-m", "pip", "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(done.stdout)}
    assert "intent-reconciler" in names and "pytest" not in names


def test_installed_validate_checks_the_sample_repository(installed: Installed,
                                                         fleet: Path) -> None:
    """`reconciler validate` from the wheel reads its own schemas: the sample passes, a
    type error fails at its line."""
    done = installed.run("reconciler", "validate", str(fleet))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 2 sites")
    broken = installed.outside / "broken"
    shutil.copytree(fleet, broken, ignore=shutil.ignore_patterns(".git"))
    nf = broken / "sites" / SITE / "manifests" / "20-networkfunctions.yaml"
    nf.write_text(nf.read_text().replace("replicas: 2", "replicas: two", 1))
    done = installed.run("reconciler", "validate", ".", cwd=broken)
    assert done.returncode == 1
    assert "20-networkfunctions.yaml:18:3: error: NetworkFunction/sfo-ran/sfo-upf" in done.stdout


def test_installed_sync_rolls_the_site_out(installed: Installed, fleet: Path,
                                           local_cluster: Path, tmp_path: Path) -> None:
    """`reconciler sync` from the wheel accepts the site's intent and rolls it out on the
    embedded cluster, and `status` reads the state it wrote (checked against the shipped
    state schema)."""
    state_dir = tmp_path / "state"
    done = installed.run("reconciler", "sync", "--repo", str(fleet), "--site", SITE,
                         "--state-dir", str(state_dir), "--kubeconfig", str(local_cluster),
                         "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    done = installed.run("reconciler", "status", "--state-dir", str(state_dir), "--site", SITE,
                         "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rollout"]["phase"] == "Succeeded"


def test_installed_demo_tells_the_story(installed: Installed) -> None:
    """`reconciler demo` from the wheel, run outside the checkout, exits 0."""
    done = installed.run("reconciler", "demo", "--ready-delay", "0.3s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Step 9: Done\n" in done.stdout


@pytest.mark.parametrize("local_cluster", ["60s"], indirect=True)
def test_sync_as_pid_1_stops_on_sigterm_within_5_seconds(installed: Installed, fleet: Path,
                                                         local_cluster: Path,
                                                         tmp_path: Path) -> None:
    """`sync` as PID 1 of a PID namespace (a container with no init), waiting on a wave
    that will not be healthy for a minute, exits on SIGTERM within 5 s, reporting the
    signal, with its rollout recorded as interrupted, to resume on the next start."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--pid", "--fork", "true"],
                                         capture_output=True, check=False).returncode != 0:
        pytest.skip("no `unshare --pid` here (needs root or user namespaces): PID 1 untested")
    state_dir = tmp_path / "state"
    process = subprocess.Popen(
        [unshare, "--pid", "--fork", "--kill-child", str(installed.venv / "bin" / "reconciler"),
         "sync", "--repo", str(fleet), "--site", SITE, "--state-dir", str(state_dir),
         "--kubeconfig", str(local_cluster)],
        cwd=installed.outside, env=installed.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        child = _child_of(process.pid)
        assert _waiting_on_a_wave(state_dir / f"{SITE}.json", process)
        sent = time.monotonic()
        os.kill(child, signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert took < 5, f"sync took {took:.1f}s to stop"
    assert process.returncode == 128 + signal.SIGTERM, out + err
    assert "received SIGTERM: stopping" in err
    record = json.loads((state_dir / f"{SITE}.json").read_text())
    assert record["rollout"]["phase"] == "Progressing"
    assert "interrupted by shutdown" in record["rollout"]["message"]


def _child_of(pid: int) -> int:
    """The process `unshare --fork` started: PID 1 inside its namespace."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("unshare started no child")


def _waiting_on_a_wave(path: Path, process: subprocess.Popen[str]) -> bool:
    """Poll the state file until the rollout waits on a wave's health."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            waves = json.loads(path.read_text())["rollout"]["waves"]
        except (OSError, ValueError, KeyError, TypeError):
            waves = []
        if any(w.get("phase") == "waiting" for w in waves):
            return True
        time.sleep(0.1)
    return False


def test_git_url_install_and_the_pre_commit_hooks(installed: Installed, fleet: Path) -> None:
    """`pip install "intent-reconciler @ git+URL"` (the example workflow's line, and what
    pre-commit does with the hooks' repository) builds from a clone and works; each
    hook's entry passes on the sample repository."""
    # The bare URL form: pip before 24 refuses `name @ git+file:///...` (no host), not
    # the https:// URLs the docs give.
    installed.pip("--no-deps", "--force-reinstall", f"git+file://{installed.source}@main")
    assert _where(installed).is_relative_to(installed.venv)
    hooks = YAML(typ="safe").load((installed.source / ".pre-commit-hooks.yaml").read_text())
    for hook in hooks:
        done = installed.run(*shlex.split(hook["entry"]), cwd=fleet)
        assert done.returncode == 0, hook["id"] + ": " + done.stdout + done.stderr
        assert done.stdout.startswith("ok: 2 sites")
