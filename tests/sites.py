"""One site under test for the pipeline's unit tests: real Git, our own Cluster port faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.site import pipeline, state
from tests import fakes, gitrepo

SITE = "edge-sfo-01"


class Env:
    """The sample site's remote, a fake cluster, a state store and the sync options."""

    def __init__(self, tmp_path: Path, remote: gitrepo.GitRemote, *,
                 store_type: type[state.FileStateStore] = state.FileStateStore) -> None:
        self.remote = remote
        self.cluster = fakes.FakeCluster()
        self.store = store_type(state_dir=tmp_path / "state", site=SITE)
        self.options = pipeline.Options(url=remote.url, site=SITE, cache_dir=tmp_path / "cache")

    def sync(self, **kwargs: Any) -> pipeline.SyncResult:
        """One `reconciler sync` pass, under the site's lock."""
        with self.store.lock():
            return pipeline.sync_once(options=self.options, store=self.store,
                                      target=self.cluster, **kwargs)
