"""`reconciler demo`: the whole story on the embedded local cluster, narrated. Called by cli.

It plays both sides: the manager (`intent publish` and `plan` on a Git repository made
from sample-repo/) and the site (the long-running agent, `reconciler run`, in this
process, woken by pushes through its file watch on the repository's refs).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import git

from reconciler import contract, kube, localcluster
from reconciler.localcluster import controllers
from reconciler.manager import plan, publish
from reconciler.repo import source
from reconciler.site import agent, pipeline, report, state

SITE = "edge-sfo-01"
SLOW, FINAL = "sfo-upf-2-4", "sfo-upf-2-5"
WC_FILE = "10-workloadcluster.yaml"
NF_FILE = "20-networkfunctions.yaml"
CM_FILE = "30-configmap.yaml"
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


def _wait(what: str, check: Callable[[], bool], timeout: float = 45.0) -> None:
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {timeout:.0f}s for {what}")
        tick.wait(0.05)


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
        say.say(f"bare repository {bare}; site {SITE} asks for intent sfo-baseline-1")

        target = kube.connect(kubeconfig=kubeconfig)
        store = state.FileStateStore(state_dir=root / "state", site=SITE)
        options = pipeline.Options(url=str(bare), site=SITE, cache_dir=root / "cache")

        def current() -> state.SiteState:
            return store.load() if store.path.exists() else state.SiteState(site=SITE)

        def outcome(intent_id: str) -> state.Outcome | None:
            entries = [h for h in current().history if h.id == intent_id]
            return entries[-1].outcome if entries else None

        def waves() -> str:
            record = current().rollout
            if record is None:
                return "-"
            return ", ".join(f"wave {w.wave} {w.phase.value}" for w in record.waves)

        try:
            with store.lock():
                site_agent = agent.Agent(options=options, store=store, target=target,
                                         interval=30.0).start()
                try:
                    say.step("The site agent starts (reconciler run) and rolls out "
                             "sfo-baseline-1, wave by wave")
                    _wait("the baseline", lambda: outcome("sfo-baseline-1")
                          is state.Outcome.SUCCEEDED)
                    say.say(f"Succeeded: {waves()}")
                    say.say("(wave 20, the network functions, started only once the "
                            "workload cluster of wave 10 was Ready)")

                    say.step(f"The manager lands {SLOW}: upgrade the workload cluster (slow) "
                             "and the UPF")
                    say.say(f"reconciler intent publish --site {SITE} --id {SLOW} "
                            f"--sequence 2 -m '...'")
                    say.say(f"...then a stale pull request merges and puts back {CM_FILE} "
                            "still carrying sfo-baseline-1: it is dropped, and its object held")
                    _publish(manager, new_id=SLOW, sequence=2, stale=(CM_FILE,),
                             message="Upgrade the workload cluster to v1.31.0 and the UPF "
                                     "to 2.4.0",
                             edits={WC_FILE: [("kubernetesVersion: v1.30.2",
                                               "kubernetesVersion: v1.31.0"),
                                              ('reconciler.dev/wave: "10"',
                                               'reconciler.dev/wave: "10"\n    '
                                               f'{controllers.DELAY_ANNOTATION}: "60"')],
                                    NF_FILE: [('version: "2.3.1"', 'version: "2.4.0"')]})
                    _wait(f"{SLOW} to wait on wave 10", lambda: "wave 10 waiting" in waves())
                    say.say(f"accepted within moments of the push; now {waves()}")

                    say.step(f"The operator changes course: {FINAL} supersedes {SLOW}")
                    say.say(f"(a different cluster version, UPF 2.5.0, and {CM_FILE} removed)")
                    _publish(manager, new_id=FINAL, sequence=3, remove=(CM_FILE,), push=False,
                             message="Cluster v1.31.1 and UPF 2.5.0 instead of 2.4",
                             edits={WC_FILE: [("kubernetesVersion: v1.31.0",
                                               "kubernetesVersion: v1.31.1"),
                                              (f'\n    {controllers.DELAY_ANNOTATION}: "60"',
                                               "")],
                                    NF_FILE: [('version: "2.4.0"', 'version: "2.5.0"')]})
                    say.say(f"reconciler plan --site {SITE} --ref HEAD (offline, against "
                            "the site's state), before the push:")
                    review = plan.make(options=plan.Options(
                        url=str(manager.working_tree_dir), site=SITE, ref="HEAD",
                        state_dir=root / "state", cache_dir=root / "plan-cache"), target=None)
                    for line in _plan_view(review):
                        say.say("  " + line)
                    manager.remote("origin").push(f"HEAD:refs/heads/{contract.DEFAULT_BRANCH}")
                    _wait(f"{FINAL} to succeed",
                          lambda: outcome(FINAL) is state.Outcome.SUCCEEDED)
                    slow = [h for h in current().history if h.id == SLOW][-1]
                    say.say(f"{SLOW}: {slow.message or slow.outcome.value}")
                    say.say(f"{FINAL}: Succeeded: {waves()}")
                    pruned = sorted({f"{r.kind}/{r.namespace}/{r.name}" for r in cluster.requests
                                     if r.verb == "delete" and r.status in (200, 202)})
                    say.say(f"pruned after success: {', '.join(pruned) or 'nothing'} "
                            "(no manifest asks for it any more)")

                    say.step("A replayed old intent (sequence 1) arrives late: the fence holds")
                    _replay(manager, old_id="sfo-baseline-1", sequence=1)
                    _wait("the refusal", lambda: outcome("sfo-baseline-1")
                          is state.Outcome.REFUSED)
                    say.say(f"refused: {current().history[-1].message}")
                finally:
                    site_agent.stop()

            say.step("What the cluster holds now")
            for line in _cluster_view(target):
                say.say(line)

            say.step(f"reconciler status --state-dir {root / 'state'} --site {SITE}")
            say.say(report.status_text(current()))
        finally:
            target.close()

        final = current().accepted
        accepted_at = state.parse_time(final.accepted_at).timestamp() if final else 0.0
        slow_after = [r for r in cluster.requests if r.intent_id == SLOW and r.time > accepted_at]
        slow_nfs = [r for r in cluster.requests if r.intent_id == SLOW
                    and r.kind == "NetworkFunction"]
        ok = (outcome(SLOW) is state.Outcome.ABORTED and outcome(FINAL) is
              state.Outcome.SUCCEEDED and not slow_after and not slow_nfs)
        say.step("Done" if ok else "Done, but something did not behave as expected")
        say.say(f"{len(cluster.requests)} API requests served; no request carried {SLOW} "
                f"after {FINAL} was accepted, and its network functions were never sent"
                if ok else f"{len(slow_after)} late and {len(slow_nfs)} wave-20 request(s) "
                           f"for {SLOW} reached the cluster")
        say.say(f"total {time.monotonic() - say.started:.1f}s")
    return 0 if ok else 1


def _make_repository(root: Path) -> tuple[Path, git.Repo]:
    bare = root / "fleet.git"
    source.Repo.init(bare, bare=True, initial_branch=contract.DEFAULT_BRANCH)
    work = root / "manager"
    shutil.copytree(contract.sample_repo_dir(), work)
    manager = source.Repo.init(work, initial_branch=contract.DEFAULT_BRANCH)
    with manager.config_writer() as config:  # `intent publish` commits as the manager
        config.set_value("user", "name", _MANAGER.name)
        config.set_value("user", "email", _MANAGER.email)
        config.set_value("commit", "gpgsign", "false")
    manager.create_remote("origin", str(bare))
    manager.git.add(A=True)
    manager.index.commit("Baseline intents for edge-sfo-01 and edge-nyc-02",
                         author=_MANAGER, committer=_MANAGER)
    manager.remote("origin").push(f"HEAD:refs/heads/{contract.DEFAULT_BRANCH}")
    return bare, manager


def _publish(manager: git.Repo, *, new_id: str, sequence: int,
             edits: dict[str, list[tuple[str, str]]], remove: tuple[str, ...] = (),
             stale: tuple[str, ...] = (), message: str, push: bool = True) -> str:
    """The manager's change: edit the manifests, then `reconciler intent publish` them
    (stamp every manifest, write intent.yaml, commit with trailers). `stale` files are then
    put back as they were, as a stale pull request merged after the publish would. Returns
    the commit; pushes unless told not to."""
    work = Path(str(manager.working_tree_dir))
    manifests = work / contract.manifests_dir(SITE)
    before = {name: (manifests / name).read_bytes() for name in stale}
    for name in remove:
        manager.index.remove([str(manifests / name)], working_tree=True)
    for name, changes in edits.items():
        body = (manifests / name).read_text(encoding="utf-8")
        for old, new in changes:
            body = body.replace(old, new, 1)
        (manifests / name).write_text(body, encoding="utf-8")
    published = publish.publish(options=publish.Options(
        repo=work, site=SITE, message=message, intent_id=new_id, sequence=sequence,
        allow_dirty=True))
    if stale:
        for name, data in before.items():
            (manifests / name).write_bytes(data)
        manager.git.add(*[str(manifests / name) for name in stale])
        manager.index.commit(f"Merge a stale pull request ({', '.join(stale)})",
                             author=_MANAGER, committer=_MANAGER)
    if push:
        manager.remote("origin").push(f"HEAD:refs/heads/{contract.DEFAULT_BRANCH}")
    return published.commit or ""


def _replay(manager: git.Repo, *, old_id: str, sequence: int) -> None:
    """A late push of an old intent (a stale branch): made by hand, since `intent publish`
    refuses an id published before."""
    work = Path(str(manager.working_tree_dir))
    intent_file = work / contract.intent_path(SITE)
    text = intent_file.read_text(encoding="utf-8")
    text = re.sub(r"^(\s+id:\s*)\S+", rf"\g<1>{old_id}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^(\s+sequence:\s*)\d+", rf"\g<1>{sequence}", text, count=1,
                  flags=re.MULTILINE)
    intent_file.write_text(text, encoding="utf-8")
    manager.git.add(A=True)
    manager.index.commit(f"Replay of an old intent\n\nIntent-Id: {old_id}\nSite: {SITE}",
                         author=_MANAGER, committer=_MANAGER)
    manager.remote("origin").push(f"HEAD:refs/heads/{contract.DEFAULT_BRANCH}")


def _plan_view(review: plan.Plan) -> list[str]:
    """The plan's verdict, objects, drops and prunes, in a few lines."""
    decision = review.decision
    if decision is None:
        return [f"invalid: {'; '.join(review.errors)}"]
    lines = [f"{decision.verdict.value}: {decision.reason}"]
    lines += [f"wave {'crds' if o.wave is None else o.wave:<4} {o.change:<10} {o.ref}"
              for o in review.objects if o.wave is not None]
    lines += [f"drop       {d.object} (carries {d.carried})" for d in decision.drops]
    lines += [f"prune      {p.entry.kind}/{p.entry.namespace}/{p.entry.name}"
              for p in review.prunes]
    return lines


def _cluster_view(target: kube.KubeCluster) -> list[str]:
    rows = []
    selector = f"{contract.LABEL_SITE}={SITE}"
    for api_version, kind in (("v1", "Namespace"), ("v1", "ConfigMap"),
                              ("telco.example.com/v1alpha1", "WorkloadCluster"),
                              ("telco.example.com/v1alpha1", "NetworkFunction")):
        for obj in target.list(api_version=api_version, kind=kind, label_selector=selector):
            meta = obj["metadata"]
            annotations = meta.get("annotations") or {}
            spec = obj.get("spec") or {}
            version = spec.get("version") or spec.get("kubernetesVersion") or ""
            rows.append((kind, meta.get("namespace", ""), meta["name"], version,
                         annotations.get(contract.ANNOTATION_INTENT_ID, "")))
    return report.table(["KIND", "NAMESPACE", "NAME", "VERSION", "INTENT"], rows).splitlines()
