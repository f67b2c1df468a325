"""Fixtures shared by the unit and end-to-end suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import contract
from tests import gitrepo


@pytest.fixture
def remote(tmp_path: Path) -> gitrepo.GitRemote:
    """A bare Git remote holding the sample repository as its first commit."""
    repo = gitrepo.GitRemote(tmp_path / "git")
    repo.copy_from(contract.sample_repo_dir())
    repo.commit_and_push("Baseline intents for edge-sfo-01 and edge-nyc-02")
    return repo
