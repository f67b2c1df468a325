"""`reconciler sync` with its state directory on a disk that is full: the real CLI, a real
(small tmpfs) file system, the embedded local cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.site import state
from tests import gitrepo, tmpfs
from tests.e2e.conftest import ClusterUnderTest, Site

pytestmark = pytest.mark.e2e


def test_sync_on_a_full_state_disk_exits_non_zero_saying_why(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """A pass whose state cannot be saved (ENOSPC) exits 1 naming the state file and the
    cause; the previous state file is intact, and the next pass, with room again, works."""
    with tmpfs.mounted(tmp_path / "state", size=256 * 1024) as disk:
        site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
        first = site.sync_cli()
        assert first.returncode == 0, first.stdout + first.stderr
        before = site.store.path.read_bytes()
        filler = tmpfs.fill(disk, leave=0)
        full = site.sync_cli()
        output = full.stdout + full.stderr
        assert full.returncode == 1, output
        assert "No space left on device" in output and str(site.store.path) in output
        assert "Traceback" not in output
        assert site.store.path.read_bytes() == before
        assert state.FileStateStore(state_dir=site.state_dir, site=site.site).load()
        filler.unlink()
        again = site.sync_cli()
        assert again.returncode == 0, again.stdout + again.stderr
