"""One reconcile of one site: the pipeline from Git to the cluster. Called by cli and agent.

The front half, `evaluate()`: fetch -> bundle -> validate -> fence -> record acceptance.
The back half, `execute()`: roll out -> prune -> record the outcome.
`sync_once()` runs both. The long-running agent runs the front half on every trigger and
the back half in its worker, so a newer intent can be accepted (and the running rollout
aborted) while a rollout waits.

Every change to the record is a pure transition of `state` applied through `SiteBox`.
Each half computes its values as it goes; its `finally` only hands the transition that
records them to the box, so every exit path (an error of ours, a bug, an abort) leaves a
true record. A pass that meets an exception that is not a ReconcilerError ends `failed`
with the error recorded, never `ok`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler import cluster, contract, durations, errors
from reconciler.repo import bundle, documents, schemas, signatures, source
from reconciler.repo import tree as trees
from reconciler.site import abort as aborts
from reconciler.site import adoption, fence, inventory, observe, prune, rollout, state
from reconciler.site import policy as policies

log = logging.getLogger("reconciler")

Transition = Callable[[state.SiteState], state.SiteState]


@dataclasses.dataclass(frozen=True)
class Options:
    """What to reconcile and where its local records live."""

    url: str
    site: str
    branch: str = contract.DEFAULT_BRANCH
    cache_dir: Path = contract.DEFAULT_CACHE_DIR
    allow_history_rewrite: bool = False
    limits: bundle.Limits = dataclasses.field(default_factory=bundle.Limits)  # --max-*-size
    # How git reaches the remote: --git-credentials-file, --ssh-key-file, --git-timeout, ...
    access: source.Access = dataclasses.field(default_factory=source.Access)
    adopt: bool = False  # --adopt: a site with no record takes HEAD even if it ran before
    # --max-prune-fraction: a revision that would prune more than this share of the site's
    # objects (of at least PRUNE_GUARD_MIN) is refused, as is one that desires nothing.
    max_prune_fraction: float = 0.5
    # --verify-signatures: the keys a fetched head must be signed by (None: not checked).
    trust: signatures.Trust | None = None
    # --allow/deny-namespace, --allow/deny-kind: what the operator lets the repository
    # write (and prune); a revision with an object outside it is refused (docs/policy.md).
    policy: policies.Policy = dataclasses.field(default_factory=policies.Policy)
    # Seconds within which the API server decides a write this site sent: the `timeout`
    # every write carries (cluster.write_deadline(--request-timeout)). After a pass that was
    # killed during a rollout, a newer intent is accepted only once this long has passed,
    # so no write the dead process left with the server lands after the acceptance.
    write_deadline: float = 0.0


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """What one pass did; `ok` is the exit status of `reconciler sync`."""

    ok: bool
    site: str
    commit: str | None
    verdict: fence.Verdict | None
    intent_id: str | None  # the intent in force after the pass
    message: str
    results: tuple[inventory.ObjectResult, ...] = ()
    drops: tuple[fence.Drop, ...] = ()
    errors: tuple[str, ...] = ()
    phase: state.Outcome | None = None
    failures: tuple[rollout.Failure, ...] = ()  # objects whose apply failed, with the error


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the front half decided for one revision: the back half's input."""

    commit: str
    decision: fence.Decision
    site_bundle: documents.Bundle


class SiteBox:
    """The site's state in memory and on disk, changed under one lock by one process."""

    def __init__(self, store: state.StateStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self.current = store.load()

    def update(self, change: Transition) -> state.SiteState:
        """Apply `change` to the record as it is now and save the result durably before
        returning it. When the save fails, the record in memory stays as it was."""
        with self._lock:
            updated = change(self.current)
            self.store.save(updated)
            self.current = updated
            return updated

    @contextlib.contextmanager
    def locked(self) -> Iterator[state.SiteState]:
        with self._lock:
            yield self.current


PRUNE_GUARD_MIN = 10  # sites with fewer recorded objects are guarded only against "nothing"


def _check_shrink(*, site_bundle: documents.Bundle, desired: int, recorded: int,
                  options: Options) -> None:
    """Refuse, before anything is applied, a revision with no manifests folder, or whose
    desired set is empty or has shrunk by more than options.max_prune_fraction of what the
    site holds: a deleted or emptied folder must not read as "delete everything".
    `rollout.prune: allowEmpty` in the intent, or `--max-prune-fraction 1`, lets it
    through; so does prune off."""
    intent = site_bundle.intent
    if not intent.prune or intent.allow_empty:
        return
    if site_bundle.manifests_missing and options.max_prune_fraction < 1:
        folder = contract.manifests_dir(site_bundle.site)
        raise errors.BundleError(
            f"{folder}/ {site_bundle.manifests_missing}: the site would desire nothing and "
            f"prune everything it applied; refused (rule: prune-guard). Restore the folder, "
            f"or set `rollout.prune: {bundle.ALLOW_EMPTY}` in {intent.location.file} to "
            "empty the site on purpose (or pass --max-prune-fraction 1)")
    if recorded == 0:
        return
    gone = max(recorded - desired, 0)
    if desired > 0 and (recorded < PRUNE_GUARD_MIN or gone <= options.max_prune_fraction
                        * recorded):
        return
    if desired == 0 and options.max_prune_fraction >= 1:
        return
    raise errors.BundleError(
        f"intent {intent.id} would leave {desired} of the {recorded} objects the site holds "
        f"and prune {gone} (more than {options.max_prune_fraction:.0%}); refused (rule: "
        f"prune-guard). If that is meant, set `rollout.prune: {bundle.ALLOW_EMPTY}` in "
        f"{intent.location.file}, or pass --max-prune-fraction 1")


def _settle(current: state.SiteState, *, seconds: float,
            wait: Callable[[float], bool]) -> str | None:
    """Wait out the API server's write deadline when the record shows the last pass died
    while it could write (its sync still `running`, an intent accepted): a write it had
    sent may still be in the server's hands (a stalled admission webhook, a slow store),
    and must be decided before this pass accepts a newer intent or writes again. Nothing
    is recorded before the wait ends, so a stop during it leaves the mark for the next
    start. Returns why the pass stops (a stop during the wait), else None."""
    writing = state.killed_while_writing(current)
    if writing is None:
        return None
    log.warning("the last pass of %s ended without a record while it could write for intent "
                "%s (killed?); waiting %s, the API server's write deadline, so nothing it "
                "sent can land after this pass decides", current.site, writing,
                durations.format_seconds(seconds))
    if wait(seconds):
        return (f"stopped while waiting out the write deadline of the last pass (intent "
                f"{writing}); the next start waits again")
    return None


def sync_once(*, options: Options, store: state.StateStore, target: cluster.Cluster,
              abort: aborts.Abort | None = None,
              observer: observe.Observer = observe.ignore) -> SyncResult:
    """Fetch, read, validate, fence, record, roll out, prune. The caller holds the lock."""
    box = SiteBox(store)
    repo = source.Source(url=options.url, branch=options.branch, cache_dir=options.cache_dir,
                         access=options.access)
    plan, failure = evaluate(box=box, repo=repo, options=options, target=target,
                             observer=observer)
    if plan is None:
        assert failure is not None
        return failure
    return execute(box=box, plan=plan, target=target, options=options,
                   abort=abort or aborts.Abort(), observer=observer)


def evaluate(
    *,
    box: SiteBox,
    repo: source.Source,
    options: Options,
    superseding: Callable[[str], contextlib.AbstractContextManager[object]] = (
        lambda _new_id: contextlib.nullcontext()),
    target: cluster.Cluster | None = None,
    observer: observe.Observer = observe.ignore,  # metrics, Events, probes (run)
    wait: Callable[[float], bool] | None = None,  # the agent's stop.wait: True to stop
    first: bool = True,  # this process's first pass of the site (the agent says when not)
) -> tuple[Plan | None, SyncResult | None]:
    """The front half: returns a Plan to roll out, or the result of a pass that ends here.

    The acceptance of a new intent is recorded inside `superseding(new_id)`: the agent's
    critical section, which stops the running rollout (abort, then drain its applies) and
    keeps any older plan from starting until the acceptance is on disk.

    With `target`, a site with no record is checked for a lost one before its first
    acceptance (`adoption.check()`): StateLostError unless `options.adopt`.

    The `first` pass of a process that finds the last one died while it could write waits
    out the API server's write deadline before anything else (`_settle()`).
    """
    stage, commit = "state", None
    plan: Plan | None = None
    result: SyncResult | None = None
    # What the finally records when the pass ends here: until a step below says otherwise,
    # that it was interrupted (a BaseException such as Ctrl-C). None: the back half ends it.
    ending: Transition | None = _failed(stage=stage, commit=commit,
                                        error="interrupted before the pass ended")
    observe.SITE.set(options.site)
    observe.tell(observer, observe.PassStarted(options.site))
    if first and options.write_deadline > 0:
        stopped = _settle(box.current, seconds=options.write_deadline,
                          wait=wait or threading.Event().wait)
        if stopped is not None:
            return None, _result(ok=False, options=options, commit=None, decision=None,
                                 message=stopped, errors=(stopped,))
    try:
        box.update(functools.partial(
            state.start_sync, source=state.SourceRecord(url=repo.display_url,
                                                        branch=options.branch),
            now=state.now()))

        # Pull: the new head, refused when it rewrote history or (with
        # --verify-signatures) is not signed by a trusted key.
        stage = "fetch"
        revision = repo.fetch(last_head=box.current.last_fetched_head,
                              allow_history_rewrite=options.allow_history_rewrite,
                              trust=options.trust, site=options.site)
        commit = revision.sha
        box.update(functools.partial(state.record_fetch, head=commit))
        log.info("fetched %s at %s (%s)", options.branch, commit[:12],
                 errors.printable(revision.subject))  # a commit's words: no escapes
        observe.tell(observer, observe.Fetched(options.site, commit))

        # Read the site's intent and manifests at that commit; stop on anything malformed.
        stage = "bundle"
        site_bundle = bundle.load(tree=trees.GitTree(repo.commit(commit)), site=options.site,
                                  limits=options.limits)
        stage = "validate"
        findings = schemas.check_bundle(site_bundle)
        if findings:
            raise errors.ValidationError(
                f"{len(findings)} invalid manifest(s): " + "; ".join(map(str, findings[:5])),
                findings=[str(f) for f in findings],
            )
        # The site's policy: the whole revision, before anything is applied.
        refusals = policies.check(policy=options.policy, manifests=site_bundle.manifests,
                                  crds=site_bundle.crds, intent_id=site_bundle.intent.id,
                                  served=policies.served_scope(target))
        if refusals:
            raise errors.ValidationError(
                f"{len(refusals)} object(s) outside the site's policy: "
                + "; ".join(map(str, refusals[:5])), findings=[str(r) for r in refusals])
        if target is not None:  # every kind served, or defined by a CRD of the revision
            rollout.check_kinds(target=target, crds=site_bundle.crds,
                                manifests=site_bundle.manifests)

        # Fence: accept, keep or refuse the intent; split manifests into apply and drop.
        stage = "fence"
        with box.locked() as current:
            fresh = current.accepted is None and not current.history
            previous = current.accepted.id if current.accepted else None
            decision = fence.decide(accepted=current.accepted,
                                    superseded=current.accepted_ids(),
                                    highest_sequence=current.highest_sequence(),
                                    intent=site_bundle.intent, manifests=site_bundle.manifests)
        if fresh and target is not None and decision.verdict is fence.Verdict.ACCEPT:
            stage = "state"  # no record: new, or lost? Never adopt HEAD silently.
            adoption.check(target=target, site=options.site, where=box.store.where,
                           manifests=site_bundle.manifests, adopt=options.adopt)
            stage = "fence"
        if decision.verdict is not fence.Verdict.REFUSE:
            _check_shrink(site_bundle=site_bundle, desired=len(decision.apply)
                          + len(decision.drops),
                          recorded=sum(not e.pending for e in box.current.inventory),
                          options=options)
        for drop in decision.drops:
            log.warning("dropped %s from %s: %s", drop.object, drop.location, drop.reason)
        drops = state.drop_records(decision.drops)
        observe.tell(observer, observe.Dropped(options.site, decision.intent_id,
                                               decision.drops))
        if decision.verdict is fence.Verdict.REFUSE:
            log.error("refused: %s", decision.reason)
            now = state.now()
            ending = _compose(
                functools.partial(state.refuse, intent=site_bundle.intent, commit=commit,
                                  reason=decision.reason, now=now),
                _finish(commit=commit, decision=decision, result="refused",
                        message=decision.reason, now=now))
            result = _result(ok=False, options=options, commit=commit, decision=decision,
                             message=decision.reason)
            observe.tell(observer, observe.Refused(options.site, site_bundle.intent.id,
                                                   commit, decision.reason))
        elif decision.verdict is fence.Verdict.ACCEPT:
            # Accept: stop the running rollout, then record the new intent durably,
            # before anything is applied for it.
            stage = "accept"
            with superseding(decision.intent_id):
                box.update(functools.partial(state.accept, intent=site_bundle.intent,
                                             commit=commit, drops=drops, now=state.now()))
            log.info("accepted intent %s (%s)", decision.intent_id, decision.reason)
            observe.tell(observer, observe.Accepted(
                options.site, decision.intent_id, site_bundle.intent.sequence, commit,
                previous))
            plan, ending = Plan(commit=commit, decision=decision, site_bundle=site_bundle), None
        else:
            stage = "accept"
            box.update(functools.partial(state.keep, drops=drops))
            log.info("intent %s is in force; converging", decision.intent_id)
            plan, ending = Plan(commit=commit, decision=decision, site_bundle=site_bundle), None
    except errors.ReconcilerError as exc:
        error = str(exc)
        log.error("%s", error)
        found = tuple(exc.findings) if isinstance(exc, errors.ValidationError) else (error,)
        ending = _failed(stage=stage, commit=commit, error=error)
        result = _result(ok=False, options=options, commit=commit, decision=None,
                         message=error, errors=found)
        if stage == "fetch":
            observe.tell(observer, observe.FetchFailed(options.site, error))
    except Exception as exc:  # a bug or an unforeseen answer: failed, never ok
        log.exception("%s stage failed unexpectedly", stage)
        error = f"{stage} failed: internal error: {errors.describe(exc)}"
        ending = _failed(stage=stage, commit=commit, error=error)
        result = _result(ok=False, options=options, commit=commit, decision=None,
                         message=error, errors=(error,))
    finally:
        if ending is not None:
            result = _save(box, ending, result)
        observe.tell(observer, observe.Evaluated(options.site))
        if result is not None:
            observe.tell(observer, observe.PassEnded(
                options.site, "refused" if result.verdict is fence.Verdict.REFUSE else
                "failed", result.message, stage=stage, accepted=box.current.accepted))
    return plan, result


def execute(*, box: SiteBox, plan: Plan, target: cluster.Cluster, options: Options,
            abort: aborts.Abort, observer: observe.Observer = observe.ignore) -> SyncResult:
    """The back half: roll the plan out, prune after success, and record the outcome."""
    decision, intent, commit = plan.decision, plan.site_bundle.intent, plan.commit
    done = box.current.rollout
    # A pass over what already rolled out successfully is a drift pass: it re-applies what
    # changed out of band, and leaves the rollout record and the history as they are
    # unless it fails.
    drift_pass = (done is not None and done.phase is state.Outcome.SUCCEEDED
                  and done.intent_id == decision.intent_id and done.commit == commit)
    # The rollout record this pass writes to: the one it opens, or the one a drift pass
    # found. Any other record (a newer intent's) is left alone.
    opened = (state.Opened.of(done) if drift_pass and done is not None else
              state.Opened(intent_id=decision.intent_id, commit=commit,
                           started_at=state.now()))

    deleted: list[inventory.ObjectResult] = []  # prune adds each deletion as it happens

    def conclude(outcome: rollout.Result, *, keep_only: frozenset[str] | None = None,
                 error: tuple[str, str] | None = None) -> tuple[Transition, SyncResult]:
        """The record and the result of the pass, had it ended here."""
        if error is not None and outcome.phase is state.Outcome.SUCCEEDED:
            outcome = dataclasses.replace(outcome, phase=state.Outcome.FAILED,
                                          message=error[1])
        if error is None and outcome.phase is not state.Outcome.SUCCEEDED:
            error = ("apply", outcome.message)
        results = outcome.results + tuple(deleted)
        aborted = outcome.phase is state.Outcome.ABORTED
        transition = _recorded(
            decision=decision, commit=commit, opened=opened, outcome=outcome,
            results=results, keep_only=keep_only, error=error, drift_pass=drift_pass,
            superseded_by=abort.superseded_by if aborted else None,
            shutdown=aborted and abort.shutdown, now=state.now())
        message = (f"intent {decision.intent_id} {outcome.phase.value.lower()}"
                   + (f": {outcome.message}" if outcome.message else ""))
        return transition, _result(
            ok=error is None, options=options, commit=commit, decision=decision,
            message=message, results=results, phase=outcome.phase,
            errors=(error[1],) if error else (), failures=outcome.failures)

    # Until a step below says otherwise, the pass was interrupted (a BaseException).
    ending, final = conclude(_failure("interrupted before the rollout ended"))
    outcome: rollout.Result | None = None
    stage = "apply"
    try:
        # Write ahead: every object this rollout may apply is in the inventory (pending)
        # before the first apply, in the same save that opens the rollout, so a crash
        # anywhere after it leaves no object the site does not know and could not prune.
        scopes = policies.scopes([*plan.site_bundle.crds, *decision.apply])
        pending = functools.partial(
            state.record_pending, intent_id=decision.intent_id, now=opened.started_at,
            objects=[(ref, m.wave) for m in decision.apply
                     for ref in rollout.possible_refs(target, m, site=options.site,
                                                      scopes=scopes)])
        if not drift_pass:
            box.update(_compose(functools.partial(
                state.start_rollout, intent_id=decision.intent_id, commit=commit,
                waves=rollout.wave_records(decision.apply), now=opened.started_at), pending))
        elif pending(box.current) is not box.current:
            box.update(pending)

        def on_progress(waves: tuple[state.WaveRecord, ...]) -> None:
            observe.tell(observer, observe.WavesChanged(options.site, decision.intent_id, waves))
            if not drift_pass:
                box.update(functools.partial(state.record_waves, rollout=opened, waves=waves))

        # Held: objects whose manifests this revision dropped. Known before any apply, so
        # recording the outcome needs no cluster.
        held = inventory.held_ids(rollout.ref_of(target, d.manifest, site=options.site)
                                  for d in decision.drops)
        # Ran: what the record has as applied under this same intent (so the same
        # manifests); a Job among them that its TTL deleted is done, not to be run again.
        ran = inventory.applied_under(box.current.inventory, intent_id=decision.intent_id)
        outcome = rollout.run(target=target, site=options.site, crds=plan.site_bundle.crds,
                              manifests=decision.apply, abort=abort, on_progress=on_progress,
                              health_timeout=intent.health_timeout, ran=ran,
                              policy=options.policy)
        ending, final = conclude(outcome)
        if outcome.phase is state.Outcome.SUCCEEDED and intent.prune:
            # Prune: only now, after a successful rollout of the accepted intent, and only
            # objects with no manifest left at all. A dropped (stale) manifest holds its
            # object: a conflict to resolve in Git, not a request to delete.
            applied = inventory.applied_ids(outcome.results)
            stale = inventory.stale(box.current.inventory, applied=applied, held=held)
            stage = "prune"
            try:
                # Kept: objects prune left that stay the site's (outside the policy), so
                # a later prune, under a looser policy, still knows them.
                kept = prune.run(target=target, site=options.site, stale=stale, abort=abort,
                                 into=deleted, policy=options.policy)
                ending, final = conclude(outcome, keep_only=applied | held | kept)
            except errors.AbortedError as exc:
                ending, final = conclude(dataclasses.replace(
                    outcome, phase=state.Outcome.ABORTED, message=str(exc)))
            except errors.ReconcilerError as exc:
                ending, final = conclude(outcome, error=("prune", f"prune failed: {exc}"))
        if outcome.phase is not state.Outcome.SUCCEEDED:
            log.error("rollout of intent %s %s: %s", decision.intent_id,
                      outcome.phase.value.lower(), outcome.message)
    except errors.ReconcilerError as exc:
        log.error("%s", exc)
        stage = "state" if isinstance(exc, errors.StateError) else stage
        ending, final = conclude(outcome or _failure(str(exc)), error=(stage, str(exc)))
    except Exception as exc:  # a bug or an unforeseen answer: failed, never ok
        log.exception("%s of intent %s failed unexpectedly", stage, decision.intent_id)
        message = f"{stage} failed: internal error: {errors.describe(exc)}"
        ending, final = conclude(outcome or _failure(message), error=(stage, message))
    finally:
        final = _save(box, ending, final)
        _report_end(observer, box=box, site=options.site, commit=commit, final=final,
                    abort=abort, drift=drift_pass, stage=stage)
    return final


def _report_end(observer: observe.Observer, *, box: SiteBox, site: str, commit: str,
                final: SyncResult, abort: aborts.Abort, drift: bool, stage: str) -> None:
    """Tell the observer how the back half ended, from the result it returns."""
    phase = final.phase or state.Outcome.FAILED
    aborted = phase is state.Outcome.ABORTED
    observe.tell(observer, observe.RolloutEnded(
        site, final.intent_id or "", commit, phase, final.message, drift=drift,
        superseded_by=abort.superseded_by if aborted else None,
        shutdown=aborted and abort.shutdown))
    observe.tell(observer, observe.PassEnded(
        site, "aborted" if aborted else "ok" if final.ok else "failed", final.message,
        stage=None if final.ok else stage, accepted=box.current.accepted))


def _failure(message: str) -> rollout.Result:
    """The outcome of a rollout that ended before it could say how."""
    return rollout.Result(phase=state.Outcome.FAILED, results=(), waves=(), message=message)


def _recorded(*, decision: fence.Decision, commit: str, opened: state.Opened,
              outcome: rollout.Result, results: tuple[inventory.ObjectResult, ...],
              keep_only: frozenset[str] | None, error: tuple[str, str] | None,
              drift_pass: bool, superseded_by: str | None, shutdown: bool,
              now: str) -> Transition:
    """The transition that records how the back half ended. Pure: it only composes."""
    aborted = outcome.phase is state.Outcome.ABORTED  # superseded, or shut down
    steps: list[Transition] = [functools.partial(
        state.record_inventory, results=results, keep_only=keep_only, now=now)]
    if not (drift_pass and outcome.phase in (state.Outcome.SUCCEEDED, state.Outcome.ABORTED)):
        # Stopped for shutdown: the rollout resumes at the next start, so it stays open.
        stopped = shutdown and aborted
        steps.append(functools.partial(
            state.end_rollout, rollout=opened,
            phase=state.Outcome.PROGRESSING if stopped else outcome.phase,
            message="interrupted by shutdown; resumes on start" if stopped else outcome.message,
            waves=outcome.waves, superseded_by=superseded_by, now=now))
    if error is not None and not aborted:
        steps.append(functools.partial(state.record_error, stage=error[0], message=error[1],
                                       commit=commit, now=now))
    result = "aborted" if aborted else "failed" if error is not None else "ok"
    steps.append(_finish(
        commit=commit, decision=decision, result=result,
        message=error[1] if error else decision.reason, now=now,
        changes=tuple(r.change for r in results), intent_id=decision.intent_id))
    return _compose(*steps)


def _failed(*, stage: str, commit: str | None, error: str) -> Transition:
    """The transition that records a front-half failure at `stage`."""
    now = state.now()
    return _compose(
        functools.partial(state.record_error, stage=stage, message=error, commit=commit,
                          now=now),
        _finish(commit=commit, decision=None, result="failed", message=error, now=now))


def _finish(*, commit: str | None, decision: fence.Decision | None, result: str, message: str,
            now: str, changes: tuple[cluster.Change, ...] = (),
            intent_id: str | None = None) -> Transition:
    return functools.partial(
        state.finish_sync, commit=commit, result=result, message=message,
        verdict=decision.verdict.value if decision else None, now=now, changes=changes,
        dropped=len(decision.drops) if decision else 0, intent_id=intent_id)


def _compose(*steps: Transition) -> Transition:
    def composed(current: state.SiteState) -> state.SiteState:
        for step in steps:
            current = step(current)
        return current
    return composed


_R = typing.TypeVar("_R", SyncResult, SyncResult | None)


def _save(box: SiteBox, ending: Transition, result: _R) -> _R:
    """Record `ending`. When the record cannot be saved, the pass has failed: the result
    says so (the state file keeps the last record that could be written)."""
    try:
        box.update(ending)
    except Exception as exc:  # a StateError (a full disk), or a bug in a transition
        if isinstance(exc, errors.StateError):
            log.error("%s", exc)
        else:
            log.exception("recording the end of the pass failed")
        if result is None:
            return result
        return dataclasses.replace(result, ok=False, message=f"{result.message}; {exc}",
                                   errors=(*result.errors, str(exc)))
    return result


def _result(*, ok: bool, options: Options, commit: str | None,
            decision: fence.Decision | None, message: str,
            results: tuple[inventory.ObjectResult, ...] = (), phase: state.Outcome | None = None,
            errors: tuple[str, ...] = (),
            failures: tuple[rollout.Failure, ...] = ()) -> SyncResult:
    return SyncResult(
        ok=ok, site=options.site, commit=commit,
        verdict=decision.verdict if decision else None,
        intent_id=decision.intent_id if decision else None,
        message=message, results=results,
        drops=decision.drops if decision else (), errors=errors, phase=phase,
        failures=failures,
    )
