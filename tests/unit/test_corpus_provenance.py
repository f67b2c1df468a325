"""The corpus of real manifests (tests/corpus/) is exactly what its projects publish."""

from __future__ import annotations

import hashlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
OWN_FILES = {"PROVENANCE", "README.md"}


def provenance() -> dict[Path, tuple[str, str, str]]:
    """Each corpus file -> (repository, commit, git blob id), from PROVENANCE."""
    found: dict[Path, tuple[str, str, str]] = {}
    for line in (CORPUS / "PROVENANCE").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        project, repository, commit, path, blob = line.split("\t")
        found[CORPUS / project / path] = (repository, commit, blob)
    return found


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's bytes (`git hash-object`), as the upstream tree lists it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_every_corpus_file_is_listed_with_its_origin():
    """Every file of the corpus names its repository, commit and path, and nothing listed
    is missing."""
    listed = provenance()
    present = {p for p in CORPUS.rglob("*") if p.is_file() and p.name not in OWN_FILES}
    assert len(listed) >= 60
    assert present == set(listed)
    projects = {p.relative_to(CORPUS).parts[0] for p in listed}
    assert len(projects) >= 6, projects


def test_every_corpus_file_is_byte_for_byte_as_published():
    """Each file's git blob id equals the one its project's tree has at the recorded
    commit: nothing was edited to make a test pass."""
    changed = [str(path.relative_to(CORPUS)) for path, (_, _, blob) in provenance().items()
               if git_blob_id(path.read_bytes()) != blob]
    assert changed == []


def test_the_blob_id_is_gits_and_sees_a_one_byte_change():
    """The id is the one `git hash-object` prints, and a one-byte change moves it."""
    assert git_blob_id(b"kind: ConfigMap\n") == "51a34c6243e883df966c87100f12cddff0f6d3fd"
    assert git_blob_id(b"kind: ConfigMap\n") != git_blob_id(b"kind: ConfigMap \n")
