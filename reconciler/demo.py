"""`reconciler demo`: the whole story on the embedded local cluster, narrated. Called by cli.

It plays both sides: the manager (commits intents to a Git repository made from
sample-repo/) and the site reconciler (sync passes against the local cluster).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import git

from reconciler import contract, kube, localcluster, reconcile, report, state

SITE = "edge-sfo-01"
NEW_INTENT = "sfo-upf-2-4"
STALE_FILE = "30-configmap.yaml"
_MANAGER = git.Actor("Central Manager", "manager@example.com")


class _Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()
        self.step_no = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        elapsed = time.monotonic() - self.started
        self.out.write(f"\n[{elapsed:5.1f}s] Step {self.step_no}: {title}\n")
        self.out.flush()

    def say(self, text: str = "") -> None:
        for line in text.splitlines() or [""]:
            self.out.write(f"    {line}\n")
        self.out.flush()


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(*, workdir: Path | None = None, ready_delay: float = 1.0, verbose: bool = False,
        out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every step behaved as the protocol says.

    The narration says what each pass did, so the reconciler's own log is silenced unless
    `verbose`.
    """
    if not verbose:
        logging.getLogger("reconciler").setLevel(logging.CRITICAL)
    say = _Narrator(out)
    with _workdir(workdir) as root, localcluster.LocalCluster(
        ready_delay=ready_delay, request_log=root / "requests.jsonl"
    ) as cluster:
        say.step("Start the embedded local cluster")
        kubeconfig = root / "kubeconfig"
        cluster.write_kubeconfig(kubeconfig)
        say.say(f"Kubernetes API on {cluster.url}; kubeconfig in {kubeconfig}")
        say.say(f"(try: kubectl --kubeconfig {kubeconfig} get networkfunctions -A)")

        say.step("The manager publishes the fleet repository (sample-repo/)")
        bare, manager = _make_repository(root)
        say.say(f"bare repository {bare}; sites: edge-sfo-01, edge-nyc-02")
        say.say(f"site {SITE} asks for intent sfo-baseline-1 (sequence 1)")

        target = kube.connect(kubeconfig=kubeconfig)
        store = state.FileStateStore(state_dir=root / "state", site=SITE)
        options = reconcile.Options(url=str(bare), site=SITE, cache_dir=root / "cache")

        def sync() -> reconcile.SyncResult:
            with store.lock():
                result = reconcile.sync_once(options=options, store=store, target=target)
            say.say(report.sync_text(result))
            return result

        try:
            say.step(f"The reconciler at {SITE} syncs: first intent")
            first = sync()

            say.step(f"The manager lands intent {NEW_INTENT}: upgrade the UPF to 2.4.0")
            say.say(f"...but {STALE_FILE} comes from a stale pull request and still carries "
                    "sfo-baseline-1")
            _publish(manager, new_id=NEW_INTENT, sequence=2, keep_old=(STALE_FILE,),
                     edit=("version: \"2.3.1\"", "version: \"2.4.0\""),
                     message=f"Upgrade the UPF to 2.4.0\n\nIntent-Id: {NEW_INTENT}\nSite: {SITE}")

            say.step("The reconciler syncs again: accept, fence, apply")
            second = sync()
            accepted = store.load().accepted
            say.say(f"state recorded intent {accepted.id if accepted else '-'} at "
                    f"{accepted.accepted_at if accepted else '-'}, before its first apply")

            say.step("What the cluster holds now")
            for line in _cluster_view(target):
                say.say(line)

            say.step("A replayed old intent (sequence 1) arrives late: the fence holds")
            _publish(manager, new_id="sfo-baseline-1", sequence=1, keep_old=(),
                     edit=None, message="Replay of an old intent")
            third = sync()

            say.step(f"reconciler status --state-dir {root / 'state'} --site {SITE}")
            say.say(report.status_text(store.load()))
        finally:
            target.close()

        stale_sent = [r for r in cluster.requests
                      if r.name == "sfo-site-config" and r.intent_id == "sfo-baseline-1"
                      and r.verb == "patch" and accepted is not None
                      and r.time > state.parse_time(accepted.accepted_at).timestamp()]
        ok = first.ok and second.ok and not third.ok and not stale_sent and len(second.drops) == 1
        say.step("Done" if ok else "Done, but something did not behave as expected")
        say.say(f"{len(cluster.requests)} API requests served; none carried the stale intent "
                "after the new one was accepted" if not stale_sent else
                f"{len(stale_sent)} stale request(s) reached the cluster")
        say.say(f"total {time.monotonic() - say.started:.1f}s")
    return 0 if ok else 1


def _make_repository(root: Path) -> tuple[Path, git.Repo]:
    bare = root / "fleet.git"
    git.Repo.init(bare, bare=True, initial_branch=contract.DEFAULT_BRANCH)
    work = root / "manager"
    shutil.copytree(contract.sample_repo_dir(), work)
    manager = git.Repo.init(work, initial_branch=contract.DEFAULT_BRANCH)
    manager.create_remote("origin", str(bare))
    manager.git.add(A=True)
    manager.index.commit("Baseline intents for edge-sfo-01 and edge-nyc-02",
                         author=_MANAGER, committer=_MANAGER)
    manager.remote("origin").push(f"HEAD:refs/heads/{contract.DEFAULT_BRANCH}")
    return bare, manager


def _publish(manager: git.Repo, *, new_id: str, sequence: int, keep_old: tuple[str, ...],
             edit: tuple[str, str] | None, message: str) -> None:
    """A stand-in for `reconciler intent publish` (issue #5): restamp, commit, push."""
    work = Path(str(manager.working_tree_dir))
    site_dir = work / contract.site_dir(SITE)
    intent_file = site_dir / contract.INTENT_FILE
    text = intent_file.read_text(encoding="utf-8")
    old_id = re.search(r"^\s+id:\s*(\S+)", text, re.MULTILINE)
    assert old_id is not None
    text = re.sub(r"^(\s+id:\s*)\S+", rf"\g<1>{new_id}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^(\s+sequence:\s*)\d+", rf"\g<1>{sequence}", text, count=1,
                  flags=re.MULTILINE)
    intent_file.write_text(text, encoding="utf-8")
    for path in sorted((site_dir / contract.MANIFESTS_DIR).glob("*.yaml")):
        if path.name in keep_old:
            continue
        body = path.read_text(encoding="utf-8").replace(
            f"{contract.ANNOTATION_INTENT_ID}: {old_id.group(1)}",
            f"{contract.ANNOTATION_INTENT_ID}: {new_id}")
        if edit and edit[0] in body:
            body = body.replace(edit[0], edit[1], 1)
        path.write_text(body, encoding="utf-8")
    manager.git.add(A=True)
    manager.index.commit(message, author=_MANAGER, committer=_MANAGER)
    manager.remote("origin").push(f"HEAD:refs/heads/{contract.DEFAULT_BRANCH}")


def _cluster_view(target: kube.KubeCluster) -> list[str]:
    rows = []
    selector = f"{contract.LABEL_SITE}={SITE}"
    for api_version, kind in (("v1", "Namespace"), ("v1", "ConfigMap"),
                              ("telco.example.com/v1alpha1", "WorkloadCluster"),
                              ("telco.example.com/v1alpha1", "NetworkFunction")):
        for obj in target.list(api_version=api_version, kind=kind, label_selector=selector):
            meta = obj["metadata"]
            annotations = meta.get("annotations") or {}
            version = (obj.get("spec") or {}).get("version", "")
            rows.append((kind, meta.get("namespace", ""), meta["name"], version,
                         annotations.get(contract.ANNOTATION_INTENT_ID, "")))
    return report.table(["KIND", "NAMESPACE", "NAME", "VERSION", "INTENT"], rows).splitlines()
