"""Tests named for the CVEs of other GitOps tools and of Kubernetes that this reconciler must
not repeat. Each pins the defence, over real Git commits and real files; each docstring
names the CVE and what it was.

Input side (#12 item 5): alias bombs, path traversal, symlinks, huge files. The webhook
CVEs (CVE-2023-25163, CVE-2024-40634) have their own tests below these.
"""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path, PurePosixPath

import git
import pytest

from reconciler import contract, errors
from reconciler.repo import bundle
from reconciler.repo import tree as trees
from tests import gitrepo
from tests.hostile import cases

OUTSIDE_SECRET = "outside-the-repository-3c9a"


def commit_sample(tmp_path: Path, case: cases.Case) -> git.Commit:
    """The sample repository with the case's files on top, committed; its commit."""
    work = tmp_path / "work"
    shutil.copytree(contract.sample_repo_dir(), work)
    gitrepo.git("init", "-q", "--initial-branch=main", ".", cwd=work)
    gitrepo.git("add", "-A", cwd=work)
    gitrepo.git("commit", "-qm", "baseline", cwd=work)
    cases.restamp(work, intent_id="sfo-cve-2")
    cases.write(work, case, intent_id="sfo-cve-2")
    gitrepo.git("add", "-A", cwd=work)
    gitrepo.git("commit", "-qm", case.name, cwd=work)
    return git.Repo(work).commit("HEAD")


# --- Input side: CVE-2019-11253, CVE-2022-24877, CVE-2022-24904, CVE-2022-31016 ---------

def test_cve_2019_11253_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    """CVE-2019-11253: kube-apiserver expanded a YAML "billion laughs" (nested aliases) to
    exhaustion. Nine levels of nine aliases, in a manifest or as the intent's description,
    are refused by the node limit within a second, naming the file and the limit."""
    started = time.monotonic()
    with pytest.raises(errors.BundleError, match=r"^m\.yaml:1 \(document 1\): document has "
                       r"more than 100000 nodes once aliases are expanded \(limit against "
                       r"alias bombs\)$"):
        bundle.parse_documents(cases.BILLION_LAUGHS, file="m.yaml")
    assert time.monotonic() - started < 1.0
    for name in ("billion-laughs", "billion-laughs-intent"):
        case = cases.by_name(name)
        with pytest.raises(errors.BundleError, match="limit against alias bombs") as caught:
            bundle.load(tree=trees.GitTree(commit_sample(tmp_path / name, case)),
                        site=cases.SITE)
        assert str(caught.value).startswith(case.file)


def test_cve_2022_24877_path_traversal_out_of_the_repository_is_refused(
        tmp_path: Path) -> None:
    """CVE-2022-24877: Flux's kustomize-controller followed a path out of the repository
    (`../`). Here no repository text picks a path: the site name is checked before a path
    is built from it, a committed folder symlink climbing out with `..` is refused, and a
    checkout read for `validate` refuses `..` past its root."""
    with pytest.raises(errors.UsageError, match=r"invalid site name '\.\./edge-sfo-01'"):
        bundle.check_site_name("../edge-sfo-01")
    case = cases.by_name("symlink-traversal")
    with pytest.raises(errors.BundleError, match="symbolic links are not allowed"):
        bundle.load(tree=trees.GitTree(commit_sample(tmp_path, case)), site=cases.SITE)
    (tmp_path / "secret.yaml").write_text(f"a: {OUTSIDE_SECRET}\n")
    checkout = trees.DirTree(tmp_path / "work")
    with pytest.raises(errors.BundleError, match="path escapes the repository root"):
        checkout.read(PurePosixPath("../secret.yaml"), max_bytes=1024)
    with pytest.raises(errors.BundleError, match="path escapes the repository root"):
        checkout.read(PurePosixPath("sites/../../secret.yaml"), max_bytes=1024)


def test_cve_2022_24904_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    """CVE-2022-24904: Argo CD's repo-server followed a committed symlink to a file outside
    the repository and served its content. A manifest committed as a symlink to a file
    outside is refused, in a commit and in a checkout, and that file's content is never
    read into any message."""
    outside = tmp_path / "outside.yaml"
    outside.write_text(f"apiVersion: v1\nkind: ConfigMap\ndata:\n  a: {OUTSIDE_SECRET}\n")
    case = cases.Case("symlink-out", "A manifest symlinked to a file outside.",
                      {cases.F: cases.Symlink(str(outside))}, cases.SYMLINK, cases.F)
    commit = commit_sample(tmp_path, case)
    with pytest.raises(errors.BundleError, match=cases.SYMLINK) as caught:
        bundle.load(tree=trees.GitTree(commit), site=cases.SITE)
    assert str(caught.value).startswith(cases.F) and OUTSIDE_SECRET not in str(caught.value)
    with pytest.raises(errors.BundleError, match=cases.SYMLINK) as caught:
        bundle.load(tree=trees.DirTree(tmp_path / "work"), site=cases.SITE)
    assert OUTSIDE_SECRET not in str(caught.value)


def test_cve_2022_31016_huge_file_is_refused_without_exhausting_memory(
        tmp_path: Path) -> None:
    """CVE-2022-31016: Argo CD's repo-server read a huge file from a repository into memory
    and was killed. A 50 MB manifest is refused from its size, before its bytes are read:
    loading the site allocates well under the file's size, in a commit and in a checkout."""
    case = cases.by_name("huge-file")
    commit = commit_sample(tmp_path, case)
    for tree in (trees.GitTree(commit), trees.DirTree(tmp_path / "work")):
        tracemalloc.start()
        try:
            with pytest.raises(errors.BundleError, match=r"file is 50000004 bytes, over the "
                               r"limit of 8388608 bytes \(8Mi\); raise it with "
                               r"--max-file-size"):
                bundle.load(tree=tree, site=cases.SITE)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 5_000_000, f"{type(tree).__name__} allocated {peak} bytes"
