"""How fast `reconciler validate` checks a large fleet repository (issue #5). Run by hand.

Builds a repository of `--manifests` manifests (default 10,000) spread over `--sites`
sites, in files of one to five documents: NetworkFunctions and WorkloadClusters checked
against the sample CRDs, and built-in ConfigMaps, Secrets, Services and Deployments
checked against Kubernetes' schemas. A few known mistakes are planted (`--plant`), and
each run checks that `validate` reports exactly those, at the planted lines.

Each run is the real command line, `reconciler validate PATH -o json`, as a new process:
the figure includes the interpreter's start and every import. The goal is under 5 s for
10,000 manifests; missing it is reported, not failed. A wrong report fails (exit 1).

    .venv/bin/python benchmarks/validate_speed.py [--manifests 10000] [--runs 5] [--jobs 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 5.0

NF = """apiVersion: telco.example.com/v1alpha1
kind: NetworkFunction
metadata:
  name: {name}
  namespace: {ns}
  labels:
    telco.example.com/function: {fn}
  annotations:
    reconciler.dev/intent-id: {intent}
    reconciler.dev/wave: "20"
spec:
  type: {type}
  version: "2.4.{n}"
  clusterRef: {ns}-wc
  replicas: {replicas}
  config:
    dnn: internet
    snssai:
      sst: 1  # eMBB
      sd: "000001"
    interfaces:
      n3:
        ipv4: 10.10.{a}.{b}
"""
WC = """apiVersion: telco.example.com/v1alpha1
kind: WorkloadCluster
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {intent}
    reconciler.dev/wave: "10"
spec:
  kubernetesVersion: v1.31.2
  region: us-west-{n}
  controlPlane:
    replicas: 3
  nodePools:
    - name: dataplane
      replicas: {replicas}
      flavor: sriov.16c64g-hp
"""
CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {intent}
data:
  plmn: "310-410"
  tac: "{n}"
  log-level: info
"""
SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {intent}
type: Opaque
stringData:
  token: not-a-real-token-{n}
"""
SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {intent}
spec:
  selector:
    app: {name}
  ports:
    - name: pfcp
      port: 8805
      protocol: UDP
"""
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {intent}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: agent
          image: registry.example.com/edge-agent:1.{n}
          ports:
            - containerPort: 9100
          resources:
            limits: {{cpu: 500m, memory: 256Mi}}
"""
NAMESPACE = """apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  annotations:
    reconciler.dev/intent-id: {intent}
"""
INTENT = """apiVersion: reconciler.dev/v1alpha1
kind: Intent
metadata:
  name: {site}
spec:
  id: {intent}
  sequence: 3
  description: benchmark intent
"""
# (template, share of the manifests)
MIX = ((NF, 0.55), (WC, 0.1), (CM, 0.15), (SECRET, 0.05), (SERVICE, 0.1), (DEPLOYMENT, 0.05))


def build(root: Path, *, manifests: int, sites: int, rng: random.Random) -> int:
    """Write the corpus; returns the number of manifest documents written."""
    shutil.copytree(ROOT / "reconciler" / "data" / "sample-repo" / "crds", root / "crds")
    per_site = max(1, manifests // sites)
    written = 0
    templates = [t for t, _ in MIX]
    weights = [w for _, w in MIX]
    for s in range(sites):
        site, ns, intent = f"edge-{s:04d}", f"ran-{s:04d}", f"bench-{s:04d}-1"
        folder = root / "sites" / site / "manifests"
        folder.mkdir(parents=True)
        (root / "sites" / site / "intent.yaml").write_text(INTENT.format(site=site,
                                                                         intent=intent))
        docs = [NAMESPACE.format(ns=ns, intent=intent)]
        docs += [rng.choices(templates, weights)[0].format(
            name=f"obj-{i:05d}", ns=ns, intent=intent, fn="upf", type="UPF", n=i % 250,
            replicas=1 + i % 4, a=i % 250, b=(i * 7) % 250) for i in range(per_site - 1)]
        index = 0
        while docs:
            take = rng.randint(1, 5)
            chunk, docs = docs[:take], docs[take:]
            (folder / f"{index:04d}.yaml").write_text("---\n".join(chunk))
            written += len(chunk)
            index += 1
    return written


def plant(root: Path, *, count: int, rng: random.Random) -> list[tuple[str, int, str]]:
    """Break `count` NetworkFunctions' replicas; returns (file, line, rule) expected."""
    expected = []
    files = sorted(root.glob("sites/*/manifests/*.yaml"))
    rng.shuffle(files)
    for path in files:
        if len(expected) == count:
            break
        lines = path.read_text().split("\n")
        for number, line in enumerate(lines):
            if line.startswith("  replicas: ") and "NetworkFunction" in "\n".join(
                    lines[max(0, number - 15):number]):
                lines[number] = "  replicas: many"
                path.write_text("\n".join(lines))
                expected.append((path.relative_to(root).as_posix(), number + 1, "schema"))
                break
    return sorted(expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plant", type=int, default=10, help="known mistakes to plant")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    reconciler = Path(sys.executable).parent / "reconciler"
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        documents = build(root, manifests=args.manifests, sites=args.sites, rng=rng)
        expected = plant(root, count=args.plant, rng=rng)
        files = len(list(root.glob("sites/*/manifests/*.yaml")))
        print(f"corpus: {documents} manifests in {files} files, {args.sites} sites, "
              f"{len(expected)} planted mistakes; built in {time.perf_counter() - started:.1f}s")
        times, failures = [], 0
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            done = subprocess.run([str(reconciler), "validate", str(root), "-o", "json"],
                                  capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - started
            times.append(elapsed)
            report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
            found = sorted((f["file"], f["line"], f["rule"]) for f in report.get("findings", []))
            ok = done.returncode == (1 if expected else 0) and found == expected \
                and report.get("documents", 0) >= documents
            failures += not ok
            print(f"run {run}: {elapsed:.2f}s wall, {report.get('documents')} documents, "
                  f"{len(found)} findings{'' if ok else ' WRONG REPORT'}", flush=True)
            if not ok:
                print(done.stderr[-2000:], file=sys.stderr)
                missing = sorted(set(expected) - set(found))
                extra = sorted(set(found) - set(expected))
                print(f"  missing {missing[:5]}, unexpected {extra[:5]}", file=sys.stderr)
        summary = {
            "manifests": documents, "files": files, "sites": args.sites, "runs": args.runs,
            "min": round(min(times), 3), "median": round(statistics.median(times), 3),
            "max": round(max(times), 3), "goal": GOAL_SECONDS, "failures": failures,
            "cpus": os.cpu_count(), "python": platform.python_version(),
        }
    print(f"\nvalidate, {documents} manifests: min {summary['min']}s, median "
          f"{summary['median']}s, max {summary['max']}s (goal < {GOAL_SECONDS:.0f}s: "
          f"{'met' if summary['max'] < GOAL_SECONDS else 'MISSED'}); {failures} wrong reports")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
