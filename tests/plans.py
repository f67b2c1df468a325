"""What a plan said and what a sync then did, in one shape, to compare. Used by the plan
tests on the fake port (tests/unit) and on real API servers (tests/e2e)."""

from __future__ import annotations

from reconciler import cluster
from reconciler.manager import plan as planner
from reconciler.site import pipeline


def planned(plan: planner.Plan) -> dict[str, str]:
    """Object -> the change the plan says its rollout makes."""
    return {str(o.ref): o.change for o in plan.objects}


def synced(result: pipeline.SyncResult) -> dict[str, str]:
    """Object -> the change the sync made (prunes aside)."""
    return {str(r.ref): r.change.value for r in result.results
            if r.change is not cluster.Change.DELETED}


def prunes_planned(plan: planner.Plan) -> list[str]:
    """The objects the plan says a successful rollout deletes."""
    return sorted(str(cluster.ObjectRef(p.entry.api_version, p.entry.kind, p.entry.namespace,
                                        p.entry.name)) for p in plan.prunes if not p.kept)


def pruned(result: pipeline.SyncResult) -> list[str]:
    """The objects the sync deleted."""
    return sorted(str(r.ref) for r in result.results if r.change is cluster.Change.DELETED)
