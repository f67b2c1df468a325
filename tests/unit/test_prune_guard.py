"""The prune guard (#12 item 4): a revision that desires nothing, or far less than the
site holds, is refused before anything is applied, unless the intent or the operator
says it is meant."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.repo import documents
from reconciler.site import pipeline

LOCATION = documents.Location(file="sites/edge-a/intent.yaml", document=0, line=1)


def bundle(*, prune: bool = True, allow_empty: bool = False,
           missing: str = "") -> documents.Bundle:
    intent = documents.Intent(site="edge-a", id="i-2", sequence=2, description="",
                              health_timeout=600.0, prune=prune, location=LOCATION,
                              allow_empty=allow_empty)
    return documents.Bundle(site="edge-a", intent=intent, manifests=(), crds=(),
                            manifests_missing=missing)


def check(*, desired: int, recorded: int, fraction: float = 0.5, **kwargs: object) -> None:
    options = pipeline.Options(url="file:///x", site="edge-a", max_prune_fraction=fraction)
    pipeline._check_shrink(site_bundle=bundle(**kwargs), desired=desired, recorded=recorded,
                           options=options)


def test_shrinking_by_more_than_the_fraction_is_refused_naming_the_way_out():
    with pytest.raises(errors.BundleError) as refused:
        check(desired=4, recorded=20)
    assert str(refused.value) == (
        "intent i-2 would leave 4 of the 20 objects the site holds and prune 16 (more than "
        "50%); refused (rule: prune-guard). If that is meant, set `rollout.prune: "
        "allowEmpty` in sites/edge-a/intent.yaml, or pass --max-prune-fraction 1")


@pytest.mark.parametrize("desired, recorded, fraction", [
    (10, 20, 0.5),   # exactly half: allowed
    (1, 9, 0.5),     # a small site may shrink as it likes, but not to nothing
    (4, 20, 0.9),    # the operator allows more
    (0, 20, 1.0),    # ... or everything
    (0, 0, 0.5),     # nothing recorded: nothing to lose
])
def test_within_the_guard(desired: int, recorded: int, fraction: float):
    check(desired=desired, recorded=recorded, fraction=fraction)


def test_desiring_nothing_is_refused_even_on_a_small_site():
    with pytest.raises(errors.BundleError, match="would leave 0 of the 3 objects"):
        check(desired=0, recorded=3)


def test_allow_empty_or_prune_off_lets_anything_through():
    check(desired=0, recorded=20, allow_empty=True)
    check(desired=0, recorded=20, prune=False, missing="is missing")


def test_a_missing_folder_is_refused_even_with_nothing_recorded():
    with pytest.raises(errors.BundleError, match=r"manifests/ is not a folder: .*prune-guard"):
        check(desired=0, recorded=0, missing="is not a folder")
