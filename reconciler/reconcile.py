"""One reconcile pass of one site: the pipeline from Git to the cluster. Called by the CLI.

fetch -> bundle -> validate -> fence -> (record acceptance) -> rollout -> record.
The state is saved in `finally`, so every exit path, a crash or an abort included,
leaves a true record.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from reconciler import abort as aborts
from reconciler import bundle, cluster, contract, errors, fence, rollout, source, state, validate
from reconciler import tree as trees

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


def sync_once(
    *,
    options: Options,
    store: state.FileStateStore,
    target: cluster.Cluster,
    abort: aborts.Abort | None = None,
) -> SyncResult:
    """Fetch, read, validate, fence, record, apply. The caller holds the store's lock."""
    abort = abort or aborts.Abort()
    previous = store.load()
    repo = source.Source(url=options.url, branch=options.branch, cache_dir=options.cache_dir)
    current = dataclasses.replace(
        previous,
        source=state.SourceRecord(url=repo.display_url, branch=options.branch),
        last_sync=state.SyncRecord(started_at=state.now(), commit=None, result="running"),
    )
    stage = "fetch"
    commit: str | None = None
    decision: fence.Decision | None = None
    outcome: rollout.Result | None = None
    error: str | None = None
    try:
        # Pull: the new head, refused when it rewrote history.
        revision = repo.fetch(last_head=previous.last_fetched_head,
                              allow_history_rewrite=options.allow_history_rewrite)
        commit = revision.sha
        current = dataclasses.replace(current, last_fetched_head=commit)
        log.info("fetched %s at %s (%s)", options.branch, commit[:12], revision.subject)

        # Read the site's intent and manifests at that commit; stop on anything malformed.
        stage = "bundle"
        site_bundle = bundle.load(tree=trees.GitTree(repo.commit(commit)), site=options.site)
        stage = "validate"
        findings = validate.check_manifests([*site_bundle.crds, *site_bundle.manifests])
        if findings:
            raise errors.ValidationError(
                f"{len(findings)} invalid manifest(s): " + "; ".join(map(str, findings[:5])),
                findings=[str(f) for f in findings],
            )

        # Fence: accept, keep or refuse the intent; split manifests into apply and drop.
        stage = "fence"
        decision = fence.decide(accepted=previous.accepted,
                                superseded=previous.superseded_ids(),
                                intent=site_bundle.intent, manifests=site_bundle.manifests)
        if decision.verdict is not fence.Verdict.REFUSE:  # a refusal keeps the last drops
            current = dataclasses.replace(
                current, drops=tuple(_drop_record(d) for d in decision.drops))
        for drop in decision.drops:
            log.warning("dropped %s from %s: %s", drop.object, drop.location, drop.reason)
        if decision.verdict is fence.Verdict.REFUSE:
            log.error("refused: %s", decision.reason)
            current = current.with_history(state.HistoryEntry(
                id=site_bundle.intent.id, sequence=site_bundle.intent.sequence, commit=commit,
                outcome=state.Outcome.REFUSED, finished_at=state.now(), message=decision.reason,
            ))
            return _result(ok=False, options=options, commit=commit, decision=decision,
                           message=decision.reason)

        # Accept: record the new intent durably before anything is applied for it.
        if decision.verdict is fence.Verdict.ACCEPT:
            current = _accept(current, intent=site_bundle.intent, commit=commit)
            store.save(current)
            log.info("accepted intent %s (%s)", decision.intent_id, decision.reason)
        else:
            log.info("intent %s is in force; converging", decision.intent_id)

        # Roll out the manifests that carry the accepted intent.
        stage = "apply"
        current = dataclasses.replace(current, rollout=state.RolloutRecord(
            intent_id=decision.intent_id, commit=commit, phase=state.Outcome.PROGRESSING,
            started_at=state.now(), waves=rollout.wave_records(decision.apply),
        ))

        def on_progress(waves: tuple[state.WaveRecord, ...]) -> None:
            nonlocal current
            assert current.rollout is not None
            current = dataclasses.replace(
                current, rollout=dataclasses.replace(current.rollout, waves=waves))
            store.save(current)

        outcome = rollout.run(target=target, site=options.site, crds=site_bundle.crds,
                              manifests=decision.apply, abort=abort, on_progress=on_progress)
        current = _record_rollout(current, outcome=outcome, abort=abort)
        ok = outcome.phase is state.Outcome.SUCCEEDED
        message = (f"intent {decision.intent_id} {outcome.phase.value.lower()}"
                   + (f": {outcome.message}" if outcome.message else ""))
        if not ok:
            error = outcome.message
            log.error("rollout of intent %s %s: %s", decision.intent_id,
                      outcome.phase.value.lower(), outcome.message)
        return _result(ok=ok, options=options, commit=commit, decision=decision,
                       message=message, outcome=outcome)
    except errors.ReconcilerError as exc:
        error = str(exc)
        log.error("%s", error)
        findings = exc.findings if isinstance(exc, errors.ValidationError) else [error]
        return _result(ok=False, options=options, commit=commit, decision=decision,
                       message=error, errors=tuple(findings))
    finally:
        if error is not None:
            current = current.with_error(state.ErrorRecord(
                time=state.now(), stage=stage, message=error, commit=commit))
        current = dataclasses.replace(current, last_sync=_sync_record(
            current.last_sync, commit=commit, decision=decision, outcome=outcome, error=error))
        store.save(current)


def _accept(current: state.SiteState, *, intent: bundle.Intent, commit: str) -> state.SiteState:
    """The state with `intent` accepted and the previous intent marked superseded."""
    old = current.accepted
    if old is not None:
        running = current.rollout is not None and current.rollout.phase in (
            state.Outcome.PENDING, state.Outcome.PROGRESSING)
        changes: dict[str, object] = {"superseded_by": intent.id}
        if running:
            changes.update(outcome=state.Outcome.ABORTED, finished_at=state.now(),
                           message=f"superseded by {intent.id}")
        current = current.update_history(old.id, **changes)
    accepted = fence.Accepted(id=intent.id, sequence=intent.sequence, commit=commit,
                              accepted_at=state.now())
    current = dataclasses.replace(current, accepted=accepted, rollout=state.RolloutRecord(
        intent_id=intent.id, commit=commit, phase=state.Outcome.PENDING,
        started_at=accepted.accepted_at,
    ))
    return current.with_history(state.HistoryEntry(
        id=intent.id, sequence=intent.sequence, commit=commit,
        outcome=state.Outcome.PROGRESSING, accepted_at=accepted.accepted_at,
    ))


def _record_rollout(current: state.SiteState, *, outcome: rollout.Result,
                    abort: aborts.Abort) -> state.SiteState:
    """Inventory, rollout record and history after a rollout ended."""
    assert current.rollout is not None
    finished = state.now()
    inventory = {entry.id: entry for entry in current.inventory}
    for result in outcome.results:
        if result.intent_id is None:
            continue  # CRDs from crds/: shared by every site, never in a site's inventory
        inventory[result.ref.inventory_id] = state.InventoryEntry(
            id=result.ref.inventory_id, api_version=result.ref.api_version,
            kind=result.ref.kind, namespace=result.ref.namespace, name=result.ref.name,
            intent_id=result.intent_id, applied_at=finished,
            resource_version=result.resource_version,
        )
    superseded = abort.superseded_by if outcome.phase is state.Outcome.ABORTED else None
    rollout_record = dataclasses.replace(
        current.rollout, phase=outcome.phase, finished_at=finished, message=outcome.message,
        waves=outcome.waves, superseded_by=superseded,
    )
    current = dataclasses.replace(
        current, rollout=rollout_record,
        inventory=tuple(inventory[key] for key in sorted(inventory)),
    )
    return current.update_history(current.rollout.intent_id, outcome=outcome.phase,
                                  finished_at=finished, message=outcome.message,
                                  **({"superseded_by": superseded} if superseded else {}))


def _drop_record(drop: fence.Drop) -> state.DropRecord:
    return state.DropRecord(file=drop.location.file, document=drop.location.document,
                            line=drop.location.line, object=drop.object, carried=drop.carried,
                            reason=drop.reason)


def _sync_record(record: state.SyncRecord | None, *, commit: str | None,
                 decision: fence.Decision | None, outcome: rollout.Result | None,
                 error: str | None) -> state.SyncRecord:
    assert record is not None
    counts = {change: 0 for change in cluster.Change}
    for result in outcome.results if outcome else ():
        counts[result.change] += 1
    if decision is not None and decision.verdict is fence.Verdict.REFUSE:
        result_text, message = "refused", decision.reason
    elif error is not None:
        result_text, message = "failed", error
    else:
        result_text, message = "ok", decision.reason if decision else ""
    return dataclasses.replace(
        record, finished_at=state.now(), commit=commit, result=result_text, message=message,
        verdict=decision.verdict.value if decision else None,
        created=counts[cluster.Change.CREATED], configured=counts[cluster.Change.CONFIGURED],
        unchanged=counts[cluster.Change.UNCHANGED],
        dropped=len(decision.drops) if decision else 0,
    )


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
