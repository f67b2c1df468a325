"""One site-name rule and one "no such site" message, for sync, publish and validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import errors
from reconciler.manager import publish, validate
from reconciler.repo import bundle
from reconciler.repo import tree as trees

RULE = "use lower-case letters, digits, '-' and '.', at most 63, starting and ending with a " \
       "letter or digit"


@pytest.mark.parametrize("site", ["edge-sfo-01", "a", "0", "edge.sfo.01", "a" * 63])
def test_valid_site_names_pass(site: str) -> None:
    """DNS-style names of lower-case letters, digits, '-' and '.' are site names."""
    bundle.check_site_name(site)


@pytest.mark.parametrize("site", ["", "Edge", "edge_sfo", "-edge", "edge-", "../etc",
                                  "sites/edge", "a" * 64, "edge sfo"])
def test_invalid_site_names_are_a_usage_error_saying_the_rule(site: str) -> None:
    """A name no site can have is a UsageError naming it and the rule."""
    with pytest.raises(errors.UsageError) as caught:
        bundle.check_site_name(site)
    assert str(caught.value) == f"invalid site name {site!r}: {RULE}"


def test_missing_site_names_the_sites_present_and_where(tmp_path: Path) -> None:
    """The error lists the sites with files, sorted, and says which tree was looked in."""
    for path in ("sites/edge-b/intent.yaml", "sites/edge-a/manifests/x.yaml", "crds/c.yaml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x: 1\n")
    (tmp_path / "sites" / "empty").mkdir()
    tree = trees.DirTree(tmp_path)
    assert bundle.site_names(tree) == ["edge-a", "edge-b"]
    error = bundle.missing_site(tree, "edge-z", where="the repository")
    assert type(error) is errors.BundleError
    assert str(error) == "sites/edge-z/: no such site in the repository (sites: edge-a, edge-b)"
    usage = bundle.missing_site(tree, "edge-z", where=str(tmp_path), kind=errors.UsageError)
    assert type(usage) is errors.UsageError
    assert str(usage).endswith(f"no such site in {tmp_path} (sites: edge-a, edge-b)")
    bare = trees.DirTree(tmp_path / "crds")
    assert str(bundle.missing_site(bare, "edge-z", where="x")).endswith("(sites: none)")


def test_publish_and_validate_word_a_bad_site_name_as_sync_does(tmp_path: Path) -> None:
    """publish refuses, and validate reports, a bad site name in the one wording."""
    with pytest.raises(errors.UsageError) as caught:
        publish.publish(options=publish.Options(repo=tmp_path, site="Edge_A", message="m"))
    assert str(caught.value) == f"invalid site name 'Edge_A': {RULE}"
    (tmp_path / "sites" / "Edge_A").mkdir(parents=True)
    (tmp_path / "sites" / "Edge_A" / "intent.yaml").write_text("kind: Intent\n")
    report = validate.run(options=validate.Options(root=tmp_path, jobs=1))
    names = [f for f in report.findings if f.rule == "site-name"]
    assert [f.message for f in names] == [f"invalid site name 'Edge_A': {RULE}"]
