"""The built kube-apiserver, kube-controller-manager and etcd. Called by tests.kube and its CLI.

build.sh owns the cache layout; this module mirrors its key (Kubernetes version, Go
version, hash of go.mod, go.sum, the main files and build.sh) only to find binaries without Go.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
NAMES = ("kube-apiserver", "kube-controller-manager", "etcd")


class BuildError(RuntimeError):
    """The binaries could not be built; a retry only helps once the named cause is fixed."""


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in go.mod, e.g. ``v1.37.2``."""
    for line in (HERE / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "k8s.io/kubernetes":
            return fields[1]
    raise BuildError(f"{HERE / 'go.mod'} does not require k8s.io/kubernetes")


def cache_root() -> Path:
    """Where build.sh keeps its builds (outside the repository)."""
    configured = os.environ.get("RECONCILER_KUBE_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "intent-reconciler" / "kube"


def source_hash() -> str:
    """The hash build.sh puts in its cache key: go.mod, go.sum, cmd/*/main.go, build.sh."""
    digest = hashlib.sha256()
    mains = sorted(HERE.glob("cmd/*/main.go"), key=lambda p: p.relative_to(HERE).as_posix())
    for path in [HERE / "go.mod", HERE / "go.sum", *mains, BUILD_SCRIPT]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def go_command() -> str | None:
    """The go tool build.sh would use, or None when there is none."""
    configured = os.environ.get("GO")
    if configured:
        return configured
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if os.access(fallback, os.X_OK) else None


def cached_bin_dir() -> Path | None:
    """A cache entry for the pinned sources holding all three binaries, built by any Go."""
    pattern = f"{kubernetes_version()}-*-{source_hash()}/bin"
    for bin_dir in sorted(cache_root().glob(pattern), reverse=True):
        if all(os.access(bin_dir / name, os.X_OK) for name in NAMES):
            return bin_dir
    return None


def built() -> bool:
    """Whether the binaries are already in the cache (no build needed)."""
    return cached_bin_dir() is not None


def available() -> bool:
    """Whether a real cluster can be run here: binaries already built, or Go to build them."""
    return cached_bin_dir() is not None or go_command() is not None


def build(*, log: Callable[[str], object] = print) -> Path:
    """Build the binaries if the cache lacks them (minutes, once) and return their directory."""
    cached = cached_bin_dir()
    if cached is not None:
        return cached
    go = go_command()
    command = ["bash", str(BUILD_SCRIPT)]
    if go is None:
        raise BuildError(
            f"`{' '.join(command)}` cannot run: go not found "
            "(install Go 1.26+, put it on PATH or set GO=/path/to/go)"
        )
    env = {**os.environ, "GO": go}
    log(f"kube build: {' '.join(command)} (first build takes 10-25 minutes on 2 cores)")
    tail: list[str] = []
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None and process.stdout is not None
        for line in process.stderr:
            line = line.rstrip("\n")
            tail = [*tail[-19:], line]
            if line.startswith("kube build:"):
                log(line)
        out = process.stdout.read().strip()
        code = process.wait()
    if code != 0:
        details = "\n".join(tail)
        raise BuildError(f"`{' '.join(command)}` failed with exit code {code}:\n{details}")
    bin_dir = Path(out.splitlines()[-1]) if out else None
    if bin_dir is None or not all(os.access(bin_dir / name, os.X_OK) for name in NAMES):
        raise BuildError(f"`{' '.join(command)}` printed {out!r}, not a bin directory with {NAMES}")
    return bin_dir
