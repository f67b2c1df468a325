"""Crash consistency, the full run (issue #12, item 10). Run by hand, not by pytest.

`reconciler sync` is killed with SIGKILL at `--points` points (200 or more over the
clusters for the issue's figure), spread over fetch, accept, apply, wait, prune and save,
on the embedded local cluster, a real kube-apiserver, or both; after each kill the site
is restarted and checked: the state parses, the accepted intent never went back, no write
of a superseded intent was handled after its successor's acceptance, the site converged,
no orphan. The scenario and the checks are tests/crash.py's; tests/e2e/test_crash.py
runs a CI-sized share of it.

    .venv/bin/python -m benchmarks.crash --points 240 --cluster both
    .venv/bin/python -m benchmarks.crash --points 8 --cluster local --verbose

`--points` is the total: with `both`, two thirds go to the local cluster and a third to
the real one (a real pass is slower). Prints each point, then the table of points and
violations per stage; exit 1 when any check was violated.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for `tests.crash`, the harness


import tests.kube  # noqa: E402
from reconciler import localcluster  # noqa: E402
from tests import crash, realcluster  # noqa: E402
from tests.e2e.conftest import ClusterUnderTest  # noqa: E402


@contextlib.contextmanager
def local_cluster(workdir: Path) -> Iterator[ClusterUnderTest]:
    """The embedded local cluster, as the end-to-end suite's `local` runs it."""
    with localcluster.LocalCluster(ready_delay=0.2) as server:
        kubeconfig = workdir / "local.kubeconfig"
        server.write_kubeconfig(kubeconfig)
        target = ClusterUnderTest(name="local", kubeconfig=kubeconfig, local=server,
                                  since=time.time())
        try:
            yield target
        finally:
            target.close()


@contextlib.contextmanager
def real_cluster(workdir: Path) -> Iterator[ClusterUnderTest]:
    """A fresh real etcd + kube-apiserver + controller manager writing an audit log, with
    the simulated controllers, as the end-to-end suite's `real` runs it."""
    if not tests.kube.built():
        raise SystemExit("the real kube-apiserver is not built: run `python -m tests.kube "
                         "build` (needs Go), or use --cluster local")
    with realcluster.running(workdir) as server:
        target = ClusterUnderTest(name="real", kubeconfig=server.kubeconfig,
                                  audit_log=server.audit_log, since=time.time())
        try:
            yield target
        finally:
            target.close()


def share(points: int, clusters: list[str]) -> dict[str, int]:
    """Points per cluster: with both, two thirds local and a third real."""
    if clusters == ["local", "real"]:
        real = points // 3
        return {"local": points - real, "real": real}
    return {clusters[0]: points}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=240,
                        help="kill points in all (default 240)")
    parser.add_argument("--cluster", choices=("local", "real", "both"), default="both")
    parser.add_argument("--json", type=Path, help="write every point and the summary here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--verbose", action="store_true", help="print every point")
    args = parser.parse_args(argv)
    clusters = ["local", "real"] if args.cluster == "both" else [args.cluster]
    reports: list[crash.Report] = []
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-crash-"))
    try:
        for name, count in share(args.points, clusters).items():
            start = local_cluster if name == "local" else real_cluster
            folder = workdir / name
            folder.mkdir()
            with start(folder) as target, crash.harness(
                    root=folder / "run", target=target,
                    say=print if args.verbose else lambda _line: None) as run:
                started = time.monotonic()
                report = run.run(count)
                print(f"{name}: {count} points in {time.monotonic() - started:.0f}s")
            print(report.table())
            reports.append(report)
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work folder kept: {workdir}")
    points = [p for r in reports for p in r.points]
    print(crash.stage_table(reports))
    print(crash.summary(points) + f" ({time.monotonic() - began:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({
            "summary": crash.summary(points),
            "points": [{"cluster": r.cluster, **dataclasses.asdict(p)}
                       for r in reports for p in r.points]}, indent=2, default=str))
    return 1 if any(p.violations for p in points) else 0


if __name__ == "__main__":
    sys.exit(main())
