"""Is a site with no record new, or has its record been lost? Called by pipeline.evaluate().

A store that finds no state (a state file deleted, a ConfigMap gone with its namespace, a
pod restarted without its volume) cannot tell by itself a new site from one whose record
was lost. Adopting the repository's head in the second case would silently forget the
history guard (the last fetched head) and every superseded intent id, so a replayed old
intent would be accepted. The evidence is on the cluster: objects that carry the site's
label (`reconciler.dev/site`), which only this reconciler writes. Where there are any, the
first acceptance is refused (StateLostError) until a person passes `--adopt`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler import cluster as ports
from reconciler import errors
from reconciler.repo import documents
from reconciler.site import rollout

log = logging.getLogger("reconciler")

SHOWN = 5  # objects named in the message


def evidence(*, target: ports.Cluster, site: str,
             manifests: Sequence[documents.Manifest]) -> list[str]:
    """The live objects of the manifests' kinds that carry the site's label, by name."""
    live = rollout.list_live(target=target, manifests=manifests, site=site)
    return sorted(str(ref) for ref in live)


def check(*, target: ports.Cluster, site: str, where: str,
          manifests: Sequence[documents.Manifest], adopt: bool) -> None:
    """Raise StateLostError when the site has no record but the cluster shows it was
    reconciled before, unless `adopt`, which only logs it."""
    found = evidence(target=target, site=site, manifests=manifests)
    if not found:
        return
    names = ", ".join(found[:SHOWN]) + (f" and {len(found) - SHOWN} more"
                                        if len(found) > SHOWN else "")
    if adopt:
        log.warning("site %s has no state in %s though the cluster holds %d of its objects "
                    "(%s): adopting the intent at the head, as --adopt asks", site, where,
                    len(found), names)
        return
    raise errors.StateLostError(
        f"site {site!r} has no state in {where}, yet the cluster holds {len(found)} object(s) "
        f"this reconciler applied for it ({names}): its state was lost. Not adopting the "
        "intent at the head silently, which would forget the history guard and the "
        "superseded intent ids: restore the state, or run once with --adopt to take the "
        "head's intent as the site's first")
