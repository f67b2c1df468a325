"""Crash consistency: SIGKILL `reconciler sync` at chosen points and check every restart.

Used by tests/e2e/test_crash.py (a CI-sized run on both clusters) and benchmarks/crash.py
(the full run, 200 points or more). Issue #12, item 10.

One site, `edge-sfo-01`, in a real Git remote (tests/gitrepo.py), on any cluster the
end-to-end suite reaches (the embedded local cluster, or a real kube-apiserver: its audit
log stands in for the request log, and a fault proxy holds requests). Each point:

1. The site holds a converged intent (A: the previous point's last one). Intent B lands:
   it adds ConfigMaps in three waves, changes some of A's objects and drops some (so
   prune runs); each wave has a custom resource that takes a moment to become Ready, so
   the rollout waits.
2. `python -m reconciler sync` runs for B, and its process group gets SIGKILL at the
   point's trigger (triggers()): a time within one stage of a clean pass measured first
   (after the save that opened that window), the k-th save in progress, or the n-th
   request of a verb (held by a fault so the process is inside it). Just before the
   kill the process is stopped with SIGSTOP and the stage it is in is read from what it
   left: a state save in progress (its temporary file), a `git fetch` child, and the
   state record (the fetched head, the accepted intent, the phase of each wave).
3. Every other point, intent C lands after the kill: it drops some of B's new objects (an
   object created by the killed rollout of B and not desired by C must be pruned once C
   succeeds).
4. `reconciler sync` runs again, until it succeeds (at most RESTARTS times), and then:
   (1) the state file parses; (2) the accepted intent never went back; (3) no successful
   write carrying an intent was handled after a newer intent's acceptance; (4) the live
   objects are those the last intent desires, with its content; (5) no live object
   carrying the site label is one the last intent does not desire (an orphan).

A violation is reported with its point and stage; orphans are then deleted and a site
that did not converge is reset, so the next point starts clean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from reconciler import cluster as ports
from reconciler import contract, errors, kube, localcluster
from reconciler.localcluster import requestlog
from reconciler.site import state
from tests import gitrepo

SITE = "edge-sfo-01"
NAMESPACE = "sfo-ran"
STAGES = ("start", "fetch", "accept", "apply", "wait", "prune", "save", "exit")
REQUIRED_STAGES = ("fetch", "accept", "apply", "wait", "prune", "save")
RESTARTS = 3  # passes allowed after a kill before the site counts as not converging
PASS_TIMEOUT = 120.0  # seconds one `reconciler sync` may take
HOLD = 0.25  # seconds a request trigger holds its request (the kill lands inside it)
# --request-timeout of every pass: its writes ask the server to decide within two thirds
# of it (4s), and a pass after a killed one waits that out before it accepts a newer
# intent, so the default (30s: 20s of waiting per point that lands C) is cut down.
REQUEST_TIMEOUT = "6s"
READY_DELAY = 0.25  # seconds each wave's custom resource takes to become Ready
FIXED = 6  # ConfigMaps every intent desires (B changes two of them)
NEW_PER_WAVE = 2  # ConfigMaps each B adds per wave; C drops the second of each
WAVES = 3
SITE_KINDS = (("v1", "ConfigMap"), ("v1", "Namespace"),
              ("telco.example.com/v1alpha1", "WorkloadCluster"),
              ("telco.example.com/v1alpha1", "NetworkFunction"))


class Target(Protocol):
    """The cluster under test, as tests/e2e/conftest.py's ClusterUnderTest offers it."""

    name: str
    kubeconfig: Path  # what the reconciler uses (through the fault proxy once faults are on)
    direct_kubeconfig: Path | None  # what the harness reads and cleans with

    def requests(self, since: float | None = None) -> list[requestlog.RequestRecord]: ...

    @property
    def faults(self) -> localcluster.FaultSet: ...


# --- the scenario: what each intent desires ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConfigMap:
    name: str
    wave: int
    data: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Intent:
    """One intent of the site: its id and sequence, and every object it desires."""

    id: str
    sequence: int
    configmaps: tuple[ConfigMap, ...]
    version: str  # the custom resources' spec version: changes with every intent

    def files(self) -> dict[str, str]:
        """The site's files for this intent: intent.yaml and one manifest per object."""
        site = f"sites/{SITE}"
        found = {f"{site}/intent.yaml": _INTENT.format(site=SITE, id=self.id,
                                                       sequence=self.sequence),
                 f"{site}/manifests/00-namespace.yaml": _NAMESPACE.format(
                     ns=NAMESPACE, id=self.id),
                 f"{site}/manifests/10-workloadcluster.yaml": _WORKLOAD_CLUSTER.format(
                     ns=NAMESPACE, id=self.id, version=self.version, delay=READY_DELAY),
                 f"{site}/manifests/20-networkfunction.yaml": _NETWORK_FUNCTION.format(
                     ns=NAMESPACE, id=self.id, version=self.version, delay=READY_DELAY)}
        for cm in self.configmaps:
            data = "".join(f"\n  {key}: {json.dumps(value)}" for key, value in cm.data)
            found[f"{site}/manifests/cm-{cm.name}.yaml"] = _CONFIGMAP.format(
                ns=NAMESPACE, id=self.id, name=cm.name, wave=cm.wave, data=data)
        return found

    def desired(self) -> dict[str, dict[str, Any]]:
        """What the live objects must hold once this intent converged, by "Kind/ns/name":
        the reconciler-managed fields the harness compares."""
        found: dict[str, dict[str, Any]] = {
            f"Namespace/{NAMESPACE}": {},
            f"WorkloadCluster/{NAMESPACE}/wc-crash": {"kubernetesVersion": self.version},
            f"NetworkFunction/{NAMESPACE}/nf-crash": {"version": self.version}}
        for cm in self.configmaps:
            found[f"ConfigMap/{NAMESPACE}/{cm.name}"] = dict(cm.data)
        return found


_INTENT = """\
apiVersion: reconciler.dev/v1alpha1
kind: Intent
metadata:
  name: {site}
spec:
  id: {id}
  sequence: {sequence}
  description: crash consistency harness
  rollout:
    healthTimeout: 60s
    prune: true
"""
_NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  annotations:
    reconciler.dev/intent-id: {id}
    reconciler.dev/wave: "0"
"""
_WORKLOAD_CLUSTER = """\
apiVersion: telco.example.com/v1alpha1
kind: WorkloadCluster
metadata:
  name: wc-crash
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {id}
    reconciler.dev/wave: "1"
    sim.reconciler.dev/ready-delay: "{delay}"
spec:
  region: us-west-2
  kubernetesVersion: {version}
  controlPlane:
    replicas: 1
  nodePools:
    - name: general
      replicas: 1
      flavor: gp.4c16g
"""
_NETWORK_FUNCTION = """\
apiVersion: telco.example.com/v1alpha1
kind: NetworkFunction
metadata:
  name: nf-crash
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {id}
    reconciler.dev/wave: "2"
    sim.reconciler.dev/ready-delay: "{delay}"
spec:
  type: UPF
  version: {version}
  clusterRef: wc-crash
  replicas: 1
"""
_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    reconciler.dev/intent-id: {id}
    reconciler.dev/wave: "{wave}"
data:{data}
"""


def _fixed(tag: str, *, changed: bool) -> tuple[ConfigMap, ...]:
    """The ConfigMaps every intent desires; `changed` rewrites the first two."""
    return tuple(ConfigMap(name=f"fixed-{k}", wave=k % WAVES, data=(
        ("slot", str(k)), ("tag", tag if changed and k < 2 else "steady")))
        for k in range(FIXED))


def _added(tag: str) -> tuple[ConfigMap, ...]:
    return tuple(ConfigMap(name=f"{tag}-w{wave}-{k}", wave=wave,
                           data=(("added-by", tag), ("wave", str(wave))))
                 for wave in range(WAVES) for k in range(NEW_PER_WAVE))


def first_intent() -> Intent:
    """Intent A: the fixed objects and a first set of added ones."""
    return Intent(id="crash-a", sequence=1, version="v1.30.0",
                  configmaps=_fixed("a", changed=False) + _added("a"))


def next_intent(current: Intent, *, tag: str) -> Intent:
    """Intent B after `current`: the added ConfigMaps of `current` dropped (pruned), two
    fixed ones changed, new ones added in every wave, the custom resources changed."""
    return Intent(id=f"crash-{tag}-b", sequence=current.sequence + 1,
                  version=f"v1.30.{current.sequence + 1}",
                  configmaps=_fixed(tag, changed=True) + _added(tag))


def superseding(intent: Intent, *, tag: str) -> Intent:
    """Intent C after B: the second new ConfigMap of every wave dropped, the rest kept
    (the first fixed one changed again)."""
    kept = tuple(cm for cm in intent.configmaps if not cm.name.endswith("-1")
                 or cm.name.startswith("fixed-"))
    kept = tuple(dataclasses.replace(cm, data=(("slot", "0"), ("tag", f"{tag}-c")))
                 if cm.name == "fixed-0" else cm for cm in kept)
    return Intent(id=f"crash-{tag}-c", sequence=intent.sequence + 1,
                  version=f"v1.30.{intent.sequence + 1}", configmaps=kept)


def land(remote: gitrepo.GitRemote, intent: Intent, *, padding: int = 0) -> str:
    """Commit and push `intent` as the site's files; returns the commit. `padding` adds
    that many bytes of incompressible data outside the site, so the fetch takes time."""
    manifests = remote.work / "sites" / SITE / "manifests"
    if manifests.exists():
        shutil.rmtree(manifests)
    for path, text in intent.files().items():
        remote.write(path, text)
    if padding:
        remote.write(f"padding/{intent.id}.txt", os.urandom(padding // 2).hex())
    return remote.commit_and_push(f"intent {intent.id}")


# --- kill points -------------------------------------------------------------------------


class TriggerKind(enum.StrEnum):
    TIME = "time"  # `seconds` after the save that opened the window `label`
    SAVE = "save"  # while the `index`-th save of the pass is in progress
    REQUEST = "request"  # inside the `index`-th request of `verb` on `path_regex`


@dataclasses.dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    seconds: float = 0.0
    index: int = 0
    verb: str = ""
    path_regex: str | None = None
    land_c: bool = False  # whether intent C lands after the kill
    # TIME: the window, by what its opening save recorded (`stage: detail`), and those
    # after it: a pass that shows one of these first (the opening save came too fast to
    # be seen) is killed at once.
    label: str = ""
    later: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind is TriggerKind.TIME:
            return f"{self.label} +{self.seconds * 1000:.0f}ms"
        if self.kind is TriggerKind.SAVE:
            return f"in save #{self.index}"
        return f"in {self.verb} #{self.index}"


@dataclasses.dataclass(frozen=True)
class Window:
    """The time from one save of a clean pass to the next (or to its end), and the stage
    the pass was in meanwhile, read from what that save recorded."""

    index: int  # the save that opens it, from 1
    length: float  # seconds
    stage: str
    label: str  # `stage: detail`, as stage_after() reads it from the opening save


@dataclasses.dataclass(frozen=True)
class Profile:
    """A clean pass of B, measured: its windows between saves, and how many requests of
    each triggering verb it sent."""

    windows: tuple[Window, ...]
    applies: int
    deletes: int
    lists: int

    @property
    def saves(self) -> int:
        return len(self.windows)

    @property
    def duration(self) -> float:
        """Seconds from the first save to the end of the pass."""
        return sum(w.length for w in self.windows)

    def describe(self) -> str:
        by_stage: dict[str, float] = {}
        for window in self.windows:
            by_stage[window.stage] = by_stage.get(window.stage, 0.0) + window.length
        return (f"{self.duration:.2f}s from its first save, {self.saves} saves ("
                + ", ".join(f"{stage} {seconds * 1000:.0f}ms"
                            for stage, seconds in by_stage.items())
                + f"); {self.applies} ConfigMap applies, {self.deletes} deletes, "
                f"{self.lists} lists of the waves' resources")


REQUEST_TRIGGERS = (("apply", r"/configmaps/"), ("delete", r"/configmaps/"),
                    ("list", r"/workloadclusters|/networkfunctions"))


def _spread(n: int) -> float:
    """The n-th of 1/2, 1/4, 3/4, 1/8, 5/8, ...: points filling an interval evenly."""
    fraction, base = 0.0, 0.5
    n += 1
    while n:
        fraction += base * (n & 1)
        n >>= 1
        base /= 2
    return fraction


def triggers(count: int, profile: Profile) -> list[Trigger]:
    """`count` kill points, the same for the same profile.

    Half are timed: they take the stages of the measured pass in turn (fetch, accept,
    apply, wait, prune); within a stage, the moments fill the stage's time evenly
    (1/2, 1/4, 3/4, ...), each as a time after the opening save of its window. A quarter land in a
    save (the 1st, 2nd, ... save of the pass, cycling). A quarter land inside a request
    held by a fault: the n-th ConfigMap apply, ConfigMap delete (prune), or list of a
    wave's custom resources (wait), cycling. Within each kind, every other point (by
    stage round, save or request round) lands intent C after the kill."""
    kinds = [TriggerKind.TIME if i % 4 in (0, 2) else TriggerKind.SAVE if i % 4 == 1
             else TriggerKind.REQUEST for i in range(count)]
    stages: dict[str, list[Window]] = {}
    for window in profile.windows:
        if window.stage not in ("exit", "start"):
            stages.setdefault(window.stage, []).append(window)
    order = [s for s in STAGES if s in stages]
    found: list[Trigger] = []
    t = s = r = 0
    for kind in kinds:
        if kind is TriggerKind.TIME and order:
            windows = stages[order[t % len(order)]]
            # A moment spread evenly over the stage's whole time, in whichever of its
            # windows that falls, as a time after that window's opening save.
            at = _spread(t // len(order)) * sum(w.length for w in windows)
            for window in windows:
                if at <= window.length or window is windows[-1]:
                    break
                at -= window.length
            found.append(Trigger(kind, index=window.index, seconds=min(at, window.length),
                                 land_c=(t // len(order)) % 2 == 0, label=window.label,
                                 later=tuple(w.label for w in profile.windows
                                             if w.index > window.index)))
            t += 1
        elif kind is TriggerKind.REQUEST:
            verb, path = REQUEST_TRIGGERS[r % len(REQUEST_TRIGGERS)]
            # A B after a C prunes only what C kept of the last B: one per wave.
            total = {"apply": profile.applies, "list": profile.lists,
                     "delete": min(profile.deletes, WAVES * (NEW_PER_WAVE - 1))}[verb]
            turn = r // len(REQUEST_TRIGGERS)
            found.append(Trigger(kind, verb=verb, path_regex=path,
                                 index=1 + (turn * 5) % max(total, 1), land_c=turn % 2 == 0))
            r += 1
        else:
            cycle = s // max(profile.saves, 1)
            found.append(Trigger(TriggerKind.SAVE, index=1 + s % max(profile.saves, 1),
                                 land_c=(s + cycle) % 2 == 1))
            s += 1
    return found


# --- one pass of `reconciler sync` ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pass:
    """One `reconciler sync`: how it ended, its saves, and for a killed one, where."""

    returncode: int | None  # None: killed
    output: str
    killed: bool
    stage: str | None  # where the kill landed
    detail: str  # what the stage was read from
    saves: tuple[tuple[float, str], ...]  # (epoch seconds, stage it opened) per save seen
    ended: float


def _children(pid: int) -> list[int]:
    """The children of `pid`, from /proc/<pid>/task/*/children."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _fetching(pid: int) -> bool:
    """Whether a `git fetch` (or a helper it started) runs below `pid`."""
    todo, seen = _children(pid), 0
    while todo and seen < 64:
        child = todo.pop()
        seen += 1
        try:
            words = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(w in (b"fetch", b"fetch-pack", b"index-pack", b"upload-pack", b"unpack-objects")
               or w.startswith(b"git-upload-pack") for w in words):
            return True
        todo += _children(child)
    return False


class Sync:
    """`python -m reconciler sync` for the site, with its state dir and Git cache."""

    def __init__(self, *, root: Path, url: str, target: Target) -> None:
        self.root = root
        self.url = url
        self.target = target
        self.state_dir = root / "state"
        self.cache_dir = root / "cache"
        self.state_path = self.state_dir / f"{SITE}.json"
        root.mkdir(parents=True, exist_ok=True)

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "reconciler", "sync", "--repo", self.url, "--site", SITE,
                "--state-dir", str(self.state_dir), "--cache-dir", str(self.cache_dir),
                "--kubeconfig", str(self.target.kubeconfig),
                "--request-timeout", REQUEST_TIMEOUT, *extra]

    def _tmp_exists(self, pid: int) -> bool:
        """Whether process `pid` is inside a save: its temporary files are there."""
        return any((self.state_dir / name).exists() for name in (
            f".{SITE}.json.{pid}.tmp", f".{SITE}.json.bak.{pid}.tmp"))

    def _inode(self) -> int | None:
        try:
            return self.state_path.stat().st_ino
        except FileNotFoundError:
            return None

    def run(self, *extra: str, trigger: Trigger | None = None,
            intent: Intent | None = None, commit: str | None = None,
            clock: Callable[[], float] = time.time) -> Pass:  # injected by tests
        """One pass, noting each save (and, given `intent` and `commit`, the stage it
        opened); with `trigger`, killed (its process group) at that point, and the stage
        it was in read just before."""
        log_path = self.root / "sync.log"
        held: localcluster.FaultHandle | None = None
        if trigger is not None and trigger.kind is TriggerKind.REQUEST:
            faults = self.target.faults
            if trigger.index > 1:
                faults.add(localcluster.Fault(verb=trigger.verb, path_regex=trigger.path_regex,
                                              times=trigger.index - 1))
            held = faults.add(localcluster.Fault(verb=trigger.verb, latency=HOLD, times=1,
                                                 path_regex=trigger.path_regex))
        with log_path.open("w", encoding="utf-8") as out:
            process = subprocess.Popen(
                self.command(*extra), stdout=out, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "KUBECONFIG": str(self.target.kubeconfig)},
                start_new_session=True)  # its own group: the kill takes git with it
            try:
                return self._watch(process, trigger=trigger, held=held, intent=intent,
                                   commit=commit, clock=clock, log_path=log_path)
            finally:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                if held is not None:
                    self.target.faults.clear()

    def _watch(self, process: subprocess.Popen[str], *, trigger: Trigger | None,
               held: localcluster.FaultHandle | None, intent: Intent | None,
               commit: str | None, clock: Callable[[], float], log_path: Path) -> Pass:
        inode = self._inode()
        saves: list[tuple[float, str]] = []
        deadline = time.monotonic() + PASS_TIMEOUT
        pause = threading.Event()
        while process.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise AssertionError(f"reconciler sync ran over {PASS_TIMEOUT:.0f}s:\n"
                                     + log_path.read_text(encoding="utf-8")[-4000:])
            now_inode = self._inode()
            if now_inode != inode:
                inode = now_inode
                timed = trigger is None or trigger.kind is TriggerKind.TIME
                saves.append((clock(), self._opened(intent=intent, commit=commit)
                              if timed and intent is not None else ""))
            if trigger is not None and self._due(trigger, pid=process.pid, saves=saves,
                                                 held=held, now=clock()):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGSTOP)
                try:
                    stage, detail = self.stage(pid=process.pid, saves=len(saves),
                                               intent=intent, commit=commit)
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                return Pass(returncode=None, killed=True, stage=stage, detail=detail,
                            output=log_path.read_text(encoding="utf-8"), saves=tuple(saves),
                            ended=clock())
            pause.wait(0.001)
        ended = clock()
        if self._inode() != inode:
            saves.append((ended, "exit: ended"))
        return Pass(returncode=process.returncode, killed=False, stage=None, detail="",
                    output=log_path.read_text(encoding="utf-8"), saves=tuple(saves),
                    ended=ended)

    def _opened(self, *, intent: Intent, commit: str | None) -> str:
        """The window a save just made opens, `stage: detail`, read from the record."""
        try:
            record = read_state(self.state_path)
        except errors.StateError as exc:
            return f"save: {exc}"
        return ": ".join(stage_after(record, intent=intent, commit=commit))

    def _due(self, trigger: Trigger, *, pid: int, saves: Sequence[tuple[float, str]],
             held: localcluster.FaultHandle | None, now: float) -> bool:
        if trigger.kind is TriggerKind.TIME:
            opened = next((moment for moment, label in saves if label == trigger.label), None)
            if opened is not None:
                return now - opened >= trigger.seconds
            return any(label in trigger.later for _, label in saves)
        if trigger.kind is TriggerKind.SAVE:
            # The index-th save is in progress once index-1 are done and a temporary
            # file is there; one missed (faster than the poll) makes the next one count.
            return len(saves) >= trigger.index - 1 and self._tmp_exists(pid)
        assert held is not None
        return held.hits > 0

    def stage(self, *, pid: int, saves: int, intent: Intent | None,
              commit: str | None) -> tuple[str, str]:
        """Where a stopped pass is: from a save's temporary file, a git fetch child, and
        the record as its last save left it."""
        if self._tmp_exists(pid):
            return "save", "a state save's temporary file is there"
        if _fetching(pid):
            return "fetch", "a git fetch is running"
        if saves == 0:
            return "start", "no save yet"
        try:
            record = read_state(self.state_path)
        except errors.StateError as exc:
            return "save", f"the state does not read: {exc}"
        return stage_after(record, intent=intent, commit=commit)


def stage_after(record: state.SiteState, *, intent: Intent | None,
                commit: str | None) -> tuple[str, str]:
    """The stage a pass of `intent` at `commit` is in, by what its last save recorded,
    and why."""
    if commit is not None and record.last_fetched_head != commit:
        return "fetch", "the new head is not recorded yet"
    if intent is not None and (record.accepted is None or record.accepted.id != intent.id):
        return "accept", "fetched; the intent is not recorded as accepted yet"
    rollout = record.rollout
    if rollout is None or intent is None or rollout.intent_id != intent.id:
        return "accept", "accepted; no rollout recorded yet"
    if rollout.phase is not state.Outcome.PROGRESSING:
        return "exit", f"rollout {rollout.phase.value.lower()}"
    for wave in rollout.waves:
        if wave.phase is state.WavePhase.APPLYING:
            return "apply", f"wave {wave.wave} applying"
        if wave.phase is state.WavePhase.WAITING:
            return "wait", f"wave {wave.wave} waiting"
    healthy = [w.wave for w in rollout.waves if w.phase is state.WavePhase.HEALTHY]
    if len(healthy) == len(rollout.waves):
        return "prune", "every wave healthy, the rollout still open"
    if healthy:
        return "apply", f"wave {healthy[-1]} healthy, the next not applying yet"
    return "apply", "rollout opened, no wave applying yet"


# --- checks ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Violation:
    point: int
    stage: str
    trigger: str
    check: str  # state, fence, late-write, converge, orphan
    detail: str

    def __str__(self) -> str:
        return (f"point {self.point} ({self.trigger}, stage {self.stage}): {self.check}: "
                f"{self.detail}")


@dataclasses.dataclass(frozen=True)
class Point:
    index: int
    trigger: str
    stage: str
    detail: str
    landed_c: bool
    restarts: int
    violations: tuple[Violation, ...]
    seconds: float


def read_state(path: Path) -> state.SiteState:
    """The state file exactly as written (no recovery from the backup): StateError when it
    is missing or does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.StateError(f"{path}: cannot read: {exc}") from exc
    return state.decode(text, where=str(path), site=SITE)


def _live(adapter: kube.KubeCluster) -> dict[str, dict[str, Any]]:
    """The site's live objects by "Kind/ns/name"."""
    found: dict[str, dict[str, Any]] = {}
    for api_version, kind in SITE_KINDS:
        try:
            items = adapter.list(api_version=api_version, kind=kind,
                                 label_selector=f"{contract.LABEL_SITE}={SITE}")
        except errors.NotFoundError:
            continue
        for item in items:
            meta = item.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue  # going: not live
            key = "/".join(p for p in (kind, meta.get("namespace"), meta.get("name")) if p)
            found[key] = item
    return found


def _content(key: str, obj: dict[str, Any]) -> dict[str, Any]:
    kind = key.split("/", 1)[0]
    if kind == "ConfigMap":
        return dict(obj.get("data") or {})
    spec = obj.get("spec") or {}
    if kind == "WorkloadCluster":
        return {"kubernetesVersion": spec.get("kubernetesVersion")}
    if kind == "NetworkFunction":
        return {"version": spec.get("version")}
    return {}


def late_writes(records: Sequence[requestlog.RequestRecord],
                record: state.SiteState) -> list[str]:
    """Successful, non-dry-run writes carrying an intent that were handled after the
    intent superseding it was accepted (by the record's history)."""
    accepted_at = {e.id: state.parse_time(e.accepted_at).timestamp()
                   for e in record.history if e.accepted_at}
    superseded_at = {e.id: accepted_at[e.superseded_by] for e in record.history
                     if e.superseded_by and e.superseded_by in accepted_at}
    found = []
    for r in records:
        if r.verb not in ("create", "update", "patch", "delete") or r.dry_run:
            continue
        if not 200 <= r.status < 300 or r.intent_id not in superseded_at:
            continue
        # When the server answered (an older request log knows only the arrival).
        handled = getattr(r, "handled", None) or r.time
        if handled > superseded_at[r.intent_id]:
            found.append(f"{r.verb} {r.path} of intent {r.intent_id} handled at {handled:.3f}, "
                         f"after its successor was accepted at "
                         f"{superseded_at[r.intent_id]:.3f}")
    return found


# --- the run -----------------------------------------------------------------------------


class Harness:
    """The scenario on one cluster: A, then a point per trigger; say() prints progress."""

    def __init__(self, *, root: Path, target: Target, say: Callable[[str], object] = print,
                 padding: int = 256 * 1024, request_triggers: bool = True) -> None:
        self.root = root
        self.target = target
        self.say = say
        self.padding = padding
        root.mkdir(parents=True, exist_ok=True)
        self.remote = gitrepo.GitRemote(root / "git")
        self.remote.copy_from(contract.sample_repo_dir())
        self.sync = Sync(root=root / "site", url=self.remote.url, target=target)
        if request_triggers:
            target.faults.clear()  # a proxy, if any, carries every pass from the first
        self.adapter = kube.connect(kubeconfig=target.direct_kubeconfig or target.kubeconfig)
        self.intent = first_intent()
        self.points: list[Point] = []
        self.tick = 0

    def close(self) -> None:
        self.adapter.close()

    def _pass_ok(self, *extra: str) -> Pass:
        done = self.sync.run(*extra)
        if done.returncode != 0:
            raise AssertionError(f"reconciler sync exited {done.returncode}:\n"
                                 + done.output[-4000:])
        return done

    def start(self) -> Profile:
        """Roll out A, then measure a clean pass of a first B (it becomes the next A)."""
        land(self.remote, self.intent, padding=self.padding)
        self._pass_ok()
        intent = next_intent(self.intent, tag=self._tag())
        commit = land(self.remote, intent, padding=self.padding)
        since = time.time()
        measured = self.sync.run(intent=intent, commit=commit)
        if measured.returncode != 0:
            raise AssertionError(f"reconciler sync exited {measured.returncode}:\n"
                                 + measured.output[-4000:])
        self.intent = intent
        moments = [t for t, _ in measured.saves] + [measured.ended]
        windows = tuple(Window(index=i + 1, length=moments[i + 1] - moments[i],
                               stage=label.split(":", 1)[0], label=label)
                        for i, (_, label) in enumerate(measured.saves))
        served = self.target.requests(since)
        writes = [r for r in served if not r.dry_run and "/configmaps/" in r.path]
        profile = Profile(
            windows=windows, applies=sum(1 for r in writes if r.verb == "patch"),
            deletes=sum(1 for r in writes if r.verb == "delete"),
            lists=sum(1 for r in served if r.verb == "list" and (
                "/workloadclusters" in r.path or "/networkfunctions" in r.path)))
        self.say(f"{self.target.name}: clean pass of B: {profile.describe()}")
        return profile

    def _tag(self) -> str:
        self.tick += 1
        return f"p{self.tick}"

    def point(self, index: int, trigger: Trigger) -> Point:
        """Kill B at `trigger`, maybe land C, restart until a pass succeeds, check."""
        began = time.time()
        base = read_state(self.sync.state_path)
        tag = self._tag()
        b = next_intent(self.intent, tag=tag)
        commit = land(self.remote, b, padding=self.padding)
        killed = self.sync.run(trigger=trigger, intent=b, commit=commit)
        stage = killed.stage or "exit"
        detail = killed.detail if killed.killed else (
            f"ended first (exit {killed.returncode}: {_last_line(killed.output)})")
        if trigger.kind is TriggerKind.REQUEST:
            threading.Event().wait(HOLD)  # the held request ends before anything else
        checks: list[tuple[str, str]] = []
        after_kill: state.SiteState | None = None
        try:
            after_kill = read_state(self.sync.state_path)
        except errors.StateError as exc:
            checks.append(("state", f"after the kill: {exc}"))
        if after_kill is not None:
            checks += [("fence", p) for p in went_back(base, after_kill, "after the kill")]
        final = b
        if trigger.land_c:
            final = superseding(b, tag=tag)
            land(self.remote, final)
        restarts, last = 0, None
        while restarts < RESTARTS:
            restarts += 1
            last = self.sync.run()
            if last.returncode == 0:
                break
            threading.Event().wait(0.5)
        assert last is not None
        if last.returncode != 0:
            tail = " | ".join(line for line in last.output.splitlines()[-3:])
            checks.append(("converge", f"no pass succeeded in {RESTARTS} restarts: {tail}"))
        try:
            record = read_state(self.sync.state_path)
        except errors.StateError as exc:
            checks.append(("state", f"after the restarts: {exc}"))
            record = None
        if record is not None:
            checks += [("fence", p) for p in went_back(after_kill or base, record,
                                                      "after the restarts")]
            if last.returncode == 0 and (record.accepted is None
                                         or record.accepted.id != final.id):
                checks.append(("fence", f"the accepted intent is "
                               f"{record.accepted.id if record.accepted else None}, not "
                               f"{final.id}"))
            checks += [("late-write", w) for w in
                       late_writes(self.target.requests(began), record)]
        live = _live(self.adapter)
        desired = final.desired()
        for key, want in sorted(desired.items()):
            obj = live.get(key)
            if obj is None:
                checks.append(("converge", f"{key} is missing"))
                continue
            got = _content(key, obj)
            if got != want:
                checks.append(("converge", f"{key} holds {got}, not {want}"))
            carried = ((obj.get("metadata") or {}).get("annotations") or {}).get(
                contract.ANNOTATION_INTENT_ID)
            if carried != final.id:
                checks.append(("converge", f"{key} carries intent {carried}, not {final.id}"))
        orphans = sorted(set(live) - set(desired))
        for key in orphans:
            carried = ((live[key].get("metadata") or {}).get("annotations") or {}).get(
                contract.ANNOTATION_INTENT_ID)
            checks.append(("orphan", f"{key} (intent {carried}) is live and not desired"))
        violations = tuple(Violation(point=index, stage=stage, trigger=str(trigger), check=c,
                                     detail=d) for c, d in checks)
        point = Point(index=index, trigger=str(trigger), stage=stage, detail=detail,
                      landed_c=trigger.land_c, restarts=restarts, violations=violations,
                      seconds=time.time() - began)
        self.points.append(point)
        self.intent = final
        self.say(f"{self.target.name} point {index}: {trigger} -> {stage} ({detail})"
                 f"{', C landed' if trigger.land_c else ''}; {restarts} restart(s); "
                 f"{len(violations)} violation(s)" + "".join(f"\n    {v}" for v in violations))
        self._repair(orphans=[live[k] for k in orphans],
                     reset=last.returncode != 0 or record is None)
        return point

    def _repair(self, *, orphans: list[dict[str, Any]], reset: bool) -> None:
        """Delete the orphans found; a site that did not converge starts over from a new
        record (its objects deleted, the record and cache removed, the intent adopted)."""
        for obj in orphans:
            with contextlib.suppress(errors.NotFoundError):
                self.adapter.delete(ports.ObjectRef.of(obj))
        if not reset:
            return
        for obj in _live(self.adapter).values():
            if obj.get("kind") != "Namespace":
                with contextlib.suppress(errors.NotFoundError):
                    self.adapter.delete(ports.ObjectRef.of(obj))
        shutil.rmtree(self.sync.state_dir, ignore_errors=True)
        shutil.rmtree(self.sync.cache_dir, ignore_errors=True)
        self._pass_ok("--adopt")

    def run(self, count: int) -> Report:
        """Roll out A, measure B, then `count` points."""
        profile = self.start()
        for index, trigger in enumerate(triggers(count, profile)):
            self.point(index, trigger)
        return Report(cluster=self.target.name, points=tuple(self.points),
                      leftovers=len(list(self.sync.state_dir.glob(f".{SITE}.json.*tmp"))))


def went_back(before: state.SiteState, after: state.SiteState, when: str) -> list[str]:
    """How `after` went back from `before`: a lower accepted sequence, or an id accepted
    before that it no longer counts as accepted (so a replay would be taken again)."""
    found = []
    low, high = before.highest_sequence(), after.highest_sequence()
    if low is not None and (high is None or high < low):
        found.append(f"{when}: the highest accepted sequence went from {low} to {high}")
    if before.accepted is not None and after.accepted is not None and (
            after.accepted.sequence or 0) < (before.accepted.sequence or 0):
        found.append(f"{when}: the accepted intent went back from {before.accepted.id} to "
                     f"{after.accepted.id}")
    if before.accepted is not None and after.accepted is None:
        found.append(f"{when}: no accepted intent (was {before.accepted.id})")
    lost = before.accepted_ids() - after.accepted_ids()
    if lost:
        found.append(f"{when}: ids accepted before are no longer recorded: {sorted(lost)}")
    return found


@dataclasses.dataclass(frozen=True)
class Report:
    cluster: str
    points: tuple[Point, ...]
    leftovers: int = 0  # temporary state files that killed saves left behind, at the end

    @property
    def violations(self) -> list[Violation]:
        return [v for p in self.points for v in p.violations]

    def stages(self) -> dict[str, int]:
        """Points per stage, in pipeline order."""
        counts = {s: 0 for s in STAGES}
        for p in self.points:
            counts[p.stage] = counts.get(p.stage, 0) + 1
        return counts

    def table(self) -> str:
        """Points and violations per stage, then the totals line and every violation."""
        lines = [f"{self.cluster}: stage    points  with violations"]
        for stage, count in self.stages().items():
            bad = sum(1 for p in self.points if p.stage == stage and p.violations)
            lines.append(f"{self.cluster}: {stage:<8} {count:>6}  {bad:>15}")
        again = sum(1 for p in self.points if p.restarts > 1)
        lines.append(f"{self.cluster}: points whose first restart failed: {again}; "
                     f"temporary state files left by killed saves: {self.leftovers}")
        lines.append(summary(self.points))
        lines += [f"  {v}" for v in self.violations]
        return "\n".join(lines)


def stage_table(reports: Sequence[Report]) -> str:
    """Points per stage and cluster, with the violations found, as one table."""
    names = [r.cluster for r in reports]
    lines = ["stage   " + "".join(f"{n:>10}" for n in names) + "     total  violations"]
    for stage in STAGES:
        counts = [r.stages().get(stage, 0) for r in reports]
        bad = sum(len(p.violations) for r in reports for p in r.points if p.stage == stage)
        lines.append(f"{stage:<8}" + "".join(f"{c:>10}" for c in counts)
                     + f"{sum(counts):>10}{bad:>12}")
    return "\n".join(lines)


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no output"


def summary(points: Sequence[Point]) -> str:
    violations = sum(len(p.violations) for p in points)
    return f"points tried: {len(points)}, violations: {violations}"


@contextlib.contextmanager
def harness(*, root: Path, target: Target, say: Callable[[str], object] = print,
            padding: int = 256 * 1024, request_triggers: bool = True) -> Iterator[Harness]:
    """A Harness, its connection closed at the end."""
    run = Harness(root=root, target=target, say=say, padding=padding,
                  request_triggers=request_triggers)
    try:
        yield run
    finally:
        run.close()


def points_from_env(default: int) -> int:
    """RECONCILER_CRASH_POINTS, or `default`."""
    text = os.environ.get("RECONCILER_CRASH_POINTS", "").strip()
    return int(text) if text else default
