"""One reconcile of one site: the pipeline from Git to the cluster. Called by cli and agent.

The front half, `evaluate()`: fetch -> bundle -> validate -> fence -> record acceptance.
The back half, `execute()`: roll out -> prune -> record the outcome.
`sync_once()` runs both. The long-running agent runs the front half on every trigger and
the back half in its worker, so a newer intent can be accepted (and the running rollout
aborted) while a rollout waits. Every record goes through `SiteBox`, which saves in
`finally`, so each exit path leaves a true record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler import cluster, contract, errors
from reconciler.repo import bundle, documents, schemas, source
from reconciler.repo import tree as trees
from reconciler.site import abort as aborts
from reconciler.site import fence, rollout, state

log = logging.getLogger("reconciler")


@dataclasses.dataclass(frozen=True)
class Options:
    """What to reconcile and where its local records live."""

    url: str
    site: str
    branch: str = contract.DEFAULT_BRANCH
    cache_dir: Path = contract.DEFAULT_CACHE_DIR
    allow_history_rewrite: bool = False


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """What one pass did; `ok` is the exit status of `reconciler sync`."""

    ok: bool
    site: str
    commit: str | None
    verdict: fence.Verdict | None
    intent_id: str | None  # the intent in force after the pass
    message: str
    results: tuple[rollout.ObjectResult, ...] = ()
    drops: tuple[fence.Drop, ...] = ()
    errors: tuple[str, ...] = ()
    phase: state.Outcome | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the front half decided for one revision: the back half's input."""

    commit: str
    decision: fence.Decision
    site_bundle: documents.Bundle


class SiteBox:
    """The site's state in memory and on disk, changed under one lock by one process."""

    def __init__(self, store: state.FileStateStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self.current = store.load()

    def update(self, change: Callable[[state.SiteState], state.SiteState]) -> state.SiteState:
        """Apply `change` and save the result durably before returning it."""
        with self._lock:
            updated = change(self.current)
            self.store.save(updated)
            self.current = updated
            return updated

    @contextlib.contextmanager
    def locked(self) -> Iterator[state.SiteState]:
        with self._lock:
            yield self.current


def sync_once(*, options: Options, store: state.FileStateStore, target: cluster.Cluster,
              abort: aborts.Abort | None = None) -> SyncResult:
    """Fetch, read, validate, fence, record, roll out, prune. The caller holds the lock."""
    box = SiteBox(store)
    repo = source.Source(url=options.url, branch=options.branch, cache_dir=options.cache_dir)
    plan, failure = evaluate(box=box, repo=repo, options=options)
    if plan is None:
        assert failure is not None
        return failure
    return execute(box=box, plan=plan, target=target, options=options,
                   abort=abort or aborts.Abort())


def evaluate(
    *,
    box: SiteBox,
    repo: source.Source,
    options: Options,
    superseding: Callable[[str], contextlib.AbstractContextManager[object]] = (
        lambda _new_id: contextlib.nullcontext()),
) -> tuple[Plan | None, SyncResult | None]:
    """The front half: returns a Plan to roll out, or the result of a pass that ends here.

    The acceptance of a new intent is recorded inside `superseding(new_id)`: the agent's
    critical section, which stops the running rollout (abort, then drain its applies) and
    keeps any older plan from starting until the acceptance is on disk.
    """
    box.update(lambda s: dataclasses.replace(
        s, source=state.SourceRecord(url=repo.display_url, branch=options.branch),
        last_sync=state.SyncRecord(started_at=state.now(), commit=None, result="running")))
    stage, commit = "fetch", None
    try:
        # Pull: the new head, refused when it rewrote history.
        revision = repo.fetch(last_head=box.current.last_fetched_head,
                              allow_history_rewrite=options.allow_history_rewrite)
        commit = revision.sha
        box.update(lambda s: dataclasses.replace(s, last_fetched_head=revision.sha))
        log.info("fetched %s at %s (%s)", options.branch, commit[:12], revision.subject)

        # Read the site's intent and manifests at that commit; stop on anything malformed.
        stage = "bundle"
        site_bundle = bundle.load(tree=trees.GitTree(repo.commit(commit)), site=options.site)
        stage = "validate"
        findings = schemas.check_manifests([*site_bundle.crds, *site_bundle.manifests])
        if findings:
            raise errors.ValidationError(
                f"{len(findings)} invalid manifest(s): " + "; ".join(map(str, findings[:5])),
                findings=[str(f) for f in findings],
            )

        # Fence: accept, keep or refuse the intent; split manifests into apply and drop.
        stage = "fence"
        with box.locked() as current:
            decision = fence.decide(accepted=current.accepted,
                                    superseded=current.superseded_ids(),
                                    intent=site_bundle.intent, manifests=site_bundle.manifests)
        for drop in decision.drops:
            log.warning("dropped %s from %s: %s", drop.object, drop.location, drop.reason)
        if decision.verdict is fence.Verdict.REFUSE:
            log.error("refused: %s", decision.reason)
            box.update(lambda s: _finish_sync(s.with_history(state.HistoryEntry(
                id=site_bundle.intent.id, sequence=site_bundle.intent.sequence, commit=commit,
                outcome=state.Outcome.REFUSED, finished_at=state.now(),
                message=decision.reason,
            )), commit=commit, decision=decision, outcome=None, error=None))
            return None, _result(ok=False, options=options, commit=commit, decision=decision,
                                 message=decision.reason)
        drops = tuple(_drop_record(d) for d in decision.drops)

        # Accept: stop the running rollout, then record the new intent durably, before
        # anything is applied for it.
        if decision.verdict is fence.Verdict.ACCEPT:
            with superseding(decision.intent_id):
                box.update(lambda s: dataclasses.replace(
                    _accept(s, intent=site_bundle.intent, commit=revision.sha), drops=drops))
            log.info("accepted intent %s (%s)", decision.intent_id, decision.reason)
        else:
            box.update(lambda s: dataclasses.replace(s, drops=drops))
            log.info("intent %s is in force; converging", decision.intent_id)
        return Plan(commit=commit, decision=decision, site_bundle=site_bundle), None
    except errors.ReconcilerError as exc:
        error = str(exc)
        log.error("%s", error)
        box.update(lambda s: _finish_sync(
            s.with_error(state.ErrorRecord(time=state.now(), stage=stage, message=error,
                                           commit=commit)),
            commit=commit, decision=None, outcome=None, error=error))
        found = exc.findings if isinstance(exc, errors.ValidationError) else [error]
        return None, _result(ok=False, options=options, commit=commit, decision=None,
                             message=error, errors=tuple(found))


def execute(*, box: SiteBox, plan: Plan, target: cluster.Cluster, options: Options,
            abort: aborts.Abort) -> SyncResult:
    """The back half: roll the plan out, prune after success, and record the outcome."""
    decision, intent = plan.decision, plan.site_bundle.intent
    outcome: rollout.Result | None = None
    pruned: list[rollout.ObjectResult] = []
    error: str | None = None
    done = box.current.rollout
    # A pass over what already rolled out successfully is a drift pass: it re-applies what
    # changed out of band, and leaves the rollout record and the history as they are
    # unless it fails.
    drift_pass = (done is not None and done.phase is state.Outcome.SUCCEEDED
                  and done.intent_id == decision.intent_id and done.commit == plan.commit)
    if not drift_pass:
        box.update(lambda s: dataclasses.replace(s, rollout=state.RolloutRecord(
            intent_id=decision.intent_id, commit=plan.commit, phase=state.Outcome.PROGRESSING,
            started_at=state.now(), waves=rollout.wave_records(decision.apply)),
        ).update_history(decision.intent_id, outcome=state.Outcome.PROGRESSING))

    def on_progress(waves: tuple[state.WaveRecord, ...]) -> None:
        if not drift_pass:
            box.update(lambda s: dataclasses.replace(s, rollout=dataclasses.replace(
                s.rollout, waves=waves)) if s.rollout else s)

    try:
        outcome = rollout.run(target=target, site=options.site, crds=plan.site_bundle.crds,
                              manifests=decision.apply, abort=abort, on_progress=on_progress,
                              health_timeout=intent.health_timeout)
        if outcome.phase is state.Outcome.SUCCEEDED and intent.prune:
            # Prune: only now, after a successful rollout of the accepted intent, and only
            # objects with no manifest left at all. A dropped (stale) manifest holds its
            # object: a conflict to resolve in Git, not a request to delete.
            keep = {r.ref.inventory_id for r in outcome.results if r.intent_id}
            keep |= _held(plan, target=target, site=options.site)
            stale = [e for e in box.current.inventory if e.id not in keep]
            try:
                pruned = rollout.prune(target=target, site=options.site, stale=stale,
                                       abort=abort)
            except errors.AbortedError as exc:
                outcome = dataclasses.replace(outcome, phase=state.Outcome.ABORTED,
                                              message=str(exc))
            except errors.ReconcilerError as exc:
                outcome = dataclasses.replace(outcome, phase=state.Outcome.FAILED,
                                              message=f"prune failed: {exc}")
        ok = outcome.phase is state.Outcome.SUCCEEDED
        if not ok:
            error = outcome.message
            log.error("rollout of intent %s %s: %s", decision.intent_id,
                      outcome.phase.value.lower(), outcome.message)
        message = (f"intent {decision.intent_id} {outcome.phase.value.lower()}"
                   + (f": {outcome.message}" if outcome.message else ""))
        final = dataclasses.replace(outcome, results=outcome.results + tuple(pruned))
        return _result(ok=ok, options=options, commit=plan.commit, decision=decision,
                       message=message, outcome=final)
    except errors.ReconcilerError as exc:
        error = str(exc)
        log.error("%s", error)
        return _result(ok=False, options=options, commit=plan.commit, decision=decision,
                       message=error, errors=(error,))
    finally:
        def record(s: state.SiteState) -> state.SiteState:
            if outcome is not None and not (drift_pass and outcome.phase in (
                    state.Outcome.SUCCEEDED, state.Outcome.ABORTED)):
                s = _record_rollout(s, outcome=outcome, abort=abort,
                                    prune_enabled=intent.prune,
                                    held=_held(plan, target=target, site=options.site))
            elif outcome is not None:
                s = _record_inventory(s, outcome=outcome, prune_enabled=intent.prune,
                                      held=_held(plan, target=target, site=options.site))
            if error is not None and not abort.is_set:
                s = s.with_error(state.ErrorRecord(time=state.now(), stage="apply",
                                                   message=error, commit=plan.commit))
            return _finish_sync(s, commit=plan.commit, decision=decision, outcome=outcome,
                                error=error, pruned=len(pruned))
        box.update(record)


def _accept(current: state.SiteState, *, intent: documents.Intent, commit: str) -> state.SiteState:
    """The state with `intent` accepted and the previous intent marked superseded."""
    old = current.accepted
    if old is not None:
        open_phases = (state.Outcome.PENDING, state.Outcome.PROGRESSING)
        running = (current.rollout is not None and current.rollout.intent_id == old.id
                   and current.rollout.phase in open_phases)
        entry = next((e for e in reversed(current.history)
                      if e.id == old.id and e.outcome is not state.Outcome.REFUSED), None)
        changes: dict[str, object] = {"superseded_by": intent.id}
        # Still open: rolling out, or accepted and superseded before its rollout began
        # (two intents landing in quick succession). Either way it ends here.
        if running or (entry is not None and entry.outcome in open_phases):
            changes.update(outcome=state.Outcome.ABORTED, finished_at=state.now(),
                           message=f"Aborted (superseded by {intent.id})")
        current = current.update_history(old.id, **changes)
        if running and current.rollout is not None:
            current = dataclasses.replace(current, rollout=dataclasses.replace(
                current.rollout, phase=state.Outcome.ABORTED, finished_at=state.now(),
                superseded_by=intent.id, message=f"Aborted (superseded by {intent.id})"))
    accepted = fence.Accepted(id=intent.id, sequence=intent.sequence, commit=commit,
                              accepted_at=state.now())
    current = dataclasses.replace(current, accepted=accepted)
    return current.with_history(state.HistoryEntry(
        id=intent.id, sequence=intent.sequence, commit=commit,
        outcome=state.Outcome.PENDING, accepted_at=accepted.accepted_at,
    ))


def _held(plan: Plan, *, target: cluster.Cluster, site: str) -> set[str]:
    """Inventory ids of the objects whose manifests this revision dropped."""
    applied = {id(m) for m in plan.decision.apply}
    return {rollout.ref_of(target, m, site=site).inventory_id
            for m in plan.site_bundle.manifests if id(m) not in applied}


def _record_rollout(current: state.SiteState, *, outcome: rollout.Result, abort: aborts.Abort,
                    prune_enabled: bool, held: set[str]) -> state.SiteState:
    """Inventory, rollout record and history after a rollout ended."""
    if current.rollout is None:
        return current
    finished = state.now()
    current = _record_inventory(current, outcome=outcome, prune_enabled=prune_enabled,
                                held=held)
    if abort.shutdown:
        # Stopped for shutdown: the rollout resumes at the next start, so it stays open.
        phase, message = state.Outcome.PROGRESSING, "interrupted by shutdown; resumes on start"
    else:
        phase, message = outcome.phase, outcome.message
    superseded = abort.superseded_by if outcome.phase is state.Outcome.ABORTED else None
    if superseded:
        message = f"Aborted (superseded by {superseded})"
    rollout_record = dataclasses.replace(
        current.rollout, phase=phase, message=message, waves=outcome.waves,
        finished_at=None if phase is state.Outcome.PROGRESSING else finished,
        superseded_by=superseded,
    )
    current = dataclasses.replace(current, rollout=rollout_record)
    if superseded:
        return current  # the acceptance of the newer intent already closed its history entry
    return current.update_history(
        rollout_record.intent_id, outcome=phase, message=message,
        finished_at=None if phase is state.Outcome.PROGRESSING else finished)


def _record_inventory(current: state.SiteState, *, outcome: rollout.Result,
                      prune_enabled: bool, held: set[str]) -> state.SiteState:
    """The inventory after a rollout: what it applied, less what a successful prune removed."""
    applied_at = state.now()
    inventory = {entry.id: entry for entry in current.inventory}
    for result in outcome.results:
        if result.intent_id is None:
            continue  # CRDs from crds/: shared by every site, never in a site's inventory
        if result.change is cluster.Change.DELETED:
            inventory.pop(result.ref.inventory_id, None)
            continue
        inventory[result.ref.inventory_id] = state.InventoryEntry(
            id=result.ref.inventory_id, api_version=result.ref.api_version,
            kind=result.ref.kind, namespace=result.ref.namespace, name=result.ref.name,
            intent_id=result.intent_id, applied_at=applied_at,
            resource_version=result.resource_version, wave=result.wave,
        )
    if outcome.phase is state.Outcome.SUCCEEDED and prune_enabled:
        # After a successful prune the inventory is what this intent applied, plus the
        # objects held by dropped manifests.
        desired = {r.ref.inventory_id for r in outcome.results
                   if r.intent_id and r.change is not cluster.Change.DELETED} | held
        inventory = {key: entry for key, entry in inventory.items() if key in desired}
    return dataclasses.replace(current,
                               inventory=tuple(inventory[key] for key in sorted(inventory)))


def _drop_record(drop: fence.Drop) -> state.DropRecord:
    return state.DropRecord(file=drop.location.file, document=drop.location.document,
                            line=drop.location.line, object=drop.object, carried=drop.carried,
                            reason=drop.reason)


def _finish_sync(current: state.SiteState, *, commit: str | None,
                 decision: fence.Decision | None, outcome: rollout.Result | None,
                 error: str | None, pruned: int = 0) -> state.SiteState:
    record = current.last_sync or state.SyncRecord(started_at=state.now(), commit=commit,
                                                   result="running")
    counts = {change: 0 for change in cluster.Change}
    for result in outcome.results if outcome else ():
        counts[result.change] += 1
    if decision is not None and decision.verdict is fence.Verdict.REFUSE:
        result_text, message = "refused", decision.reason
    elif error is not None:
        result_text, message = "failed", error
    else:
        result_text, message = "ok", decision.reason if decision else ""
    return dataclasses.replace(current, last_sync=dataclasses.replace(
        record, finished_at=state.now(), commit=commit, result=result_text, message=message,
        verdict=decision.verdict.value if decision else None,
        created=counts[cluster.Change.CREATED], configured=counts[cluster.Change.CONFIGURED],
        unchanged=counts[cluster.Change.UNCHANGED], pruned=pruned,
        dropped=len(decision.drops) if decision else 0,
    ))


def _result(*, ok: bool, options: Options, commit: str | None,
            decision: fence.Decision | None, message: str,
            outcome: rollout.Result | None = None, errors: tuple[str, ...] = ()) -> SyncResult:
    return SyncResult(
        ok=ok, site=options.site, commit=commit,
        verdict=decision.verdict if decision else None,
        intent_id=decision.intent_id if decision else None,
        message=message, results=outcome.results if outcome else (),
        drops=decision.drops if decision else (), errors=errors,
        phase=outcome.phase if outcome else None,
    )
