"""Command line for the real cluster: ``python -m tests.kube build``, ``... up`` or
``... discovery``.

``up`` builds if needed, starts etcd, kube-apiserver and kube-controller-manager, copies
the kubeconfig to --kubeconfig-out and runs until SIGINT or SIGTERM. ``discovery`` starts
one, prints its discovery documents as JSON (the local cluster's
reconciler/localcluster/builtin-kinds-v1.37.json) and stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import tests.kube
from tests.kube import _discovery


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.kube", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the binaries into the cache (once)")
    up = commands.add_parser("up", help="run a cluster in the foreground until interrupted")
    up.add_argument("--kubeconfig-out", type=Path, required=True, help="write a kubeconfig here")
    up.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    up.add_argument("--timeout", type=float, default=60.0, help="start-up timeout, seconds")
    commands.add_parser("discovery", help="print a fresh server's discovery as JSON")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        bin_dir = tests.kube.build(log=log)
    except tests.kube.BuildError as exc:
        log(f"error: {exc}")
        return 1
    if args.command == "build":
        print(bin_dir)
        return 0
    if args.command == "discovery":
        return run_discovery(bin_dir=bin_dir, log=log)
    return run_up(
        kubeconfig_out=args.kubeconfig_out,
        workdir=args.workdir,
        bin_dir=bin_dir,
        timeout=args.timeout,
        log=log,
    )


def run_discovery(*, bin_dir: Path, log: Callable[[str], object]) -> int:
    """Start a cluster, print its discovery as JSON on stdout, stop it."""
    try:
        with tests.kube.running(bin_dir=bin_dir, log=log) as cluster:
            found = _discovery.capture(url=cluster.url, token=cluster.token,
                                       ca_file=cluster.ca_file)
    except tests.kube.StartError as exc:
        log(f"error: {exc}")
        return 1
    print(json.dumps(found, indent=1, sort_keys=False))
    return 0


def run_up(
    *,
    kubeconfig_out: Path,
    workdir: Path | None,
    bin_dir: Path,
    timeout: float,
    log: Callable[[str], object],
) -> int:
    """Start the cluster, announce it, wait for a signal, stop it."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log(f"kube: {signal.Signals(signum).name} received, stopping")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        with tests.kube.running(
            workdir=workdir, bin_dir=bin_dir, timeout=timeout, abort=stop, log=log
        ) as cluster:
            kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
            kubeconfig_out.write_text(cluster.kubeconfig.read_text())
            kubeconfig_out.chmod(0o600)
            print(f"url:        {cluster.url}")
            print(f"kubeconfig: {kubeconfig_out.resolve()}")
            print(f"logs:       {cluster.apiserver_log.parent}")
            print(f"ready in {cluster.ready_after:.1f}s, settled in {cluster.settled_after:.1f}s")
            print(f"try:        kubectl --kubeconfig {kubeconfig_out} get ns", flush=True)
            stop.wait()
    except tests.kube.StartError as exc:
        log(f"error: {exc}")
        return 1
    log("kube: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
