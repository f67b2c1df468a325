"""The state stores' one contract, held by the file store and the kubernetes store alike (on
our own Cluster port faked); the same tests run against both real clusters in
tests/e2e/test_state_stores.py. Plus what only the kubernetes store has: its object, its
size limit, optimistic concurrency, the lease guard; and a lost state, for both."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import cluster, errors
from reconciler.repo import documents
from reconciler.site import kubestate, pipeline, state
from tests import fakes, gitrepo, sites

SITE = "edge-a"
T0 = "2026-11-27T12:00:00.000000Z"
SHA = "a" * 40
NAMESPACE = "reconciler-system"

# A store of each kind, and a second handle on the same record (another process).
Stores = tuple[state.StateStore, Callable[[], state.StateStore]]


def make_stores(kind: str, tmp_path: Path, target: cluster.Cluster | None) -> Stores:
    if kind == "file":
        return (state.FileStateStore(state_dir=tmp_path / "state", site=SITE),
                lambda: state.FileStateStore(state_dir=tmp_path / "state", site=SITE))
    assert target is not None
    return (kubestate.KubeStateStore(target=target, namespace=NAMESPACE, site=SITE),
            lambda: kubestate.KubeStateStore(target=target, namespace=NAMESPACE, site=SITE))


@pytest.fixture(params=["file", "kubernetes"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    yield make_stores(request.param, tmp_path, fakes.FakeCluster())


def intent(intent_id: str, sequence: int | None = None) -> documents.Intent:
    return documents.Intent(site=SITE, id=intent_id, sequence=sequence, description="",
                            health_timeout=60.0, prune=True,
                            location=documents.Location(file="intent.yaml", document=0))


def accepted(*ids: str) -> state.SiteState:
    s = state.SiteState(site=SITE)
    for n, intent_id in enumerate(ids):
        s = state.accept(s, intent=intent(intent_id, n + 1), commit=SHA, drops=(), now=T0)
    return s


# --- the contract: every store ------------------------------------------------------------


def check_contract_empty(stores: Stores) -> None:
    store, _ = stores
    assert not store.exists()
    assert store.load() == state.SiteState(site=SITE)


def check_contract_round_trip(stores: Stores) -> None:
    store, reopen = stores
    s = dataclasses.replace(accepted("i-1", "i-2"), last_fetched_head=SHA)
    store.save(s)
    assert store.exists()
    assert reopen().load() == s
    again = state.record_fetch(s, head="b" * 40)
    store.save(again)  # a second save over the first
    assert reopen().load() == again


def check_contract_second_writer_refused(stores: Stores) -> None:
    store, reopen = stores
    store.save(accepted("i-1"))
    other = reopen()
    if isinstance(store, state.FileStateStore):
        with store.lock(), pytest.raises(errors.StateLockedError), other.lock():
            pass
        return
    other.load()
    store.save(accepted("i-1", "i-2"))  # the first writer moves on
    with pytest.raises(errors.StateConflictError, match="another reconciler"):
        other.save(accepted("i-1", "i-3"))  # the second read before that: refused
    assert reopen().load().accepted.id == "i-2"  # type: ignore[union-attr]


def check_contract_superseded_ids_outlive_history(stores: Stores) -> None:
    store, reopen = stores
    s = accepted(*(f"i-{n}" for n in range(state.HISTORY_LIMIT + 3)))
    assert all(e.id != "i-0" for e in s.history)
    store.save(s)
    assert "i-0" in reopen().load().superseded_ids()


def check_contract_invalid_state_not_written(stores: Stores) -> None:
    store, reopen = stores
    store.save(accepted("i-1"))
    bad = dataclasses.replace(accepted("i-1", "i-2"), site="")
    with pytest.raises(errors.StateError, match="refusing to write an invalid state"):
        store.save(bad)
    assert reopen().load().accepted.id == "i-1"  # type: ignore[union-attr]


CONTRACT = [check_contract_empty, check_contract_round_trip,
            check_contract_second_writer_refused,
            check_contract_superseded_ids_outlive_history,
            check_contract_invalid_state_not_written]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_store_contract(stores: Stores, check: Callable[[Stores], None]) -> None:
    """Each store loads empty, round-trips, refuses a second writer, keeps superseded ids
    past the history limit and never writes an invalid record."""
    check(stores)


# --- the kubernetes store ------------------------------------------------------------------


def test_kube_store_keeps_the_file_stores_json_in_its_configmap(tmp_path: Path) -> None:
    """The ConfigMap reconciler-state-<site> holds, under state.json, exactly the bytes the
    file store writes, and is labelled with the site it records (not the site label)."""
    fake = fakes.FakeCluster()
    s = accepted("i-1", "i-2")
    kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE).save(s)
    file_store = state.FileStateStore(state_dir=tmp_path, site=SITE)
    file_store.save(s)
    ref = cluster.ObjectRef("v1", "ConfigMap", NAMESPACE, "reconciler-state-edge-a")
    stored = fake.objects[ref]
    assert stored["data"] == {"state.json": file_store.path.read_text()}
    assert stored["metadata"]["labels"] == {"reconciler.dev/state-of": SITE,
                                            "app.kubernetes.io/managed-by": "reconciler"}
    assert kubestate.sites_in(target=fake, namespace=NAMESPACE) == [SITE]


def test_kube_store_first_save_creates_then_updates_over_the_version_read() -> None:
    """The first save is a create, each later one an update carrying the resourceVersion
    the store last saw."""
    fake = fakes.FakeCluster()
    store = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE)
    store.load()
    store.save(accepted("i-1"))
    store.save(accepted("i-1", "i-2"))
    verbs = [verb for verb, what in fake.calls if what.startswith("ConfigMap/")]
    assert verbs == ["get", "create", "update"]


def test_two_stores_creating_the_first_record_one_wins() -> None:
    """Two replicas that both found no record: the second create is a conflict."""
    fake = fakes.FakeCluster()
    first = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE)
    second = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE)
    first.load(), second.load()
    first.save(accepted("i-1"))
    with pytest.raises(errors.StateConflictError):
        second.save(accepted("i-9"))
    assert second.conflicted


def test_a_deleted_record_is_not_recreated_by_a_later_save() -> None:
    """A record deleted after it was read is a conflict too: the save does not recreate
    it (a person deleted it, or another replica did something we do not know)."""
    fake = fakes.FakeCluster()
    store = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE)
    store.save(accepted("i-1"))
    fake.objects.clear()
    with pytest.raises(errors.StateConflictError, match="deleted since"):
        store.save(accepted("i-1", "i-2"))
    assert not fake.objects


def test_a_state_too_big_for_a_configmap_is_refused_naming_its_size() -> None:
    """A record over 1 MiB is not sent; the error names its size and the way out, and the
    stored record stays the previous one."""
    fake = fakes.FakeCluster()
    store = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE)
    store.save(accepted("i-1"))
    entries = tuple(state.InventoryEntry(
        id=f"ns_cm-{n}__ConfigMap", api_version="v1", kind="ConfigMap", namespace="ns",
        name=f"cm-{n}-" + "x" * 200, intent_id="i-1", applied_at=T0) for n in range(4000))
    big = dataclasses.replace(accepted("i-1"), inventory=entries)
    with pytest.raises(errors.StateError, match=r"is \d+ bytes, more than the 1048576 a "
                                                r"ConfigMap holds \(inventory of 4000 objects"):
        store.save(big)
    assert kubestate.KubeStateStore(target=fake, namespace=NAMESPACE,
                                    site=SITE).load().inventory == ()


def test_a_corrupt_configmap_is_a_state_error_naming_it() -> None:
    """A state.json that is not JSON, or missing, is a StateError naming the ConfigMap."""
    fake = fakes.FakeCluster()
    store = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE)
    store.save(accepted("i-1"))
    (ref,) = fake.objects
    fake.objects[ref]["data"] = {"state.json": "{not json"}
    with pytest.raises(errors.StateError,
                       match=r"ConfigMap/reconciler-system/reconciler-state-edge-a\[state.json\]"
                             r":1:2: corrupt state file"):
        store.load()
    fake.objects[ref]["data"] = {}
    with pytest.raises(errors.StateError, match=r"no 'state\.json' key"):
        store.load()


def test_the_lease_guard_refuses_a_save_once_the_lease_is_lost() -> None:
    """With a guard (the site's Lease), a save after the lease is lost writes nothing."""
    fake = fakes.FakeCluster()
    held = [True]

    def guard() -> None:
        if not held[0]:
            raise errors.NotLeaderError("not the leader")

    store = kubestate.KubeStateStore(target=fake, namespace=NAMESPACE, site=SITE, guard=guard)
    store.save(accepted("i-1"))
    held[0] = False
    with pytest.raises(errors.NotLeaderError):
        store.save(accepted("i-1", "i-2"))
    assert json.loads(next(iter(fake.objects.values()))["data"]["state.json"])[
        "accepted"]["id"] == "i-1"


def test_default_namespace_is_the_pods_else_reconciler_system(tmp_path: Path) -> None:
    """The state namespace defaults to the service account's namespace file."""
    path = tmp_path / "namespace"
    assert kubestate.default_namespace(str(path)) == "reconciler-system"
    path.write_text("edge-ops\n")
    assert kubestate.default_namespace(str(path)) == "edge-ops"


# --- a state lost entirely: both stores ----------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "kubernetes"])
def test_a_lost_state_is_refused_loudly_until_adopt(kind: str, tmp_path: Path,
                                                    remote: gitrepo.GitRemote) -> None:
    """A site whose record is gone while the cluster still holds its labelled objects is
    not silently re-adopted: the pass fails naming the objects and --adopt; with adopt it
    accepts the head's intent."""
    env = sites.Env(tmp_path, remote)
    store: state.StateStore = env.store if kind == "file" else kubestate.KubeStateStore(
        target=env.cluster, namespace=NAMESPACE, site=sites.SITE)

    def sync(options: pipeline.Options) -> pipeline.SyncResult:
        with store.lock():
            return pipeline.sync_once(options=options, store=store, target=env.cluster)

    first = sync(env.options)
    assert first.ok, first.message
    # The record is lost entirely: the file and its backup deleted, or the ConfigMap.
    if isinstance(store, state.FileStateStore):
        store.path.unlink()
        store.backup_path.unlink()
    else:
        del env.cluster.objects[store.ref]
        store = kubestate.KubeStateStore(target=env.cluster, namespace=NAMESPACE,
                                         site=sites.SITE)
    applied = len(env.cluster.applied())
    lost = sync(env.options)
    assert not lost.ok
    assert "its state was lost" in lost.message and "--adopt" in lost.message
    assert "Namespace/sfo-ran" in lost.message
    assert len(env.cluster.applied()) == applied  # nothing applied
    recorded = store.load()
    assert recorded.accepted is None and recorded.errors[-1].stage == "state"
    again = sync(env.options)  # still refused: the failed pass did not adopt anything
    assert not again.ok and "its state was lost" in again.message
    adopted = sync(dataclasses.replace(env.options, adopt=True))
    assert adopted.ok, adopted.message
    assert store.load().accepted is not None


def test_a_new_site_with_nothing_on_the_cluster_is_accepted(tmp_path: Path,
                                                            remote: gitrepo.GitRemote) -> None:
    """No record and none of the site's objects on the cluster: a new site, accepted."""
    env = sites.Env(tmp_path, remote)
    assert env.sync().ok


def test_the_state_flags_parse() -> None:
    """`run` takes --site repeatedly, --state-store, --state-namespace, --lease-duration and
    --adopt; `sync` takes one --site; `status` takes the store flags."""
    from reconciler import cli

    parser = cli.build_parser()
    run = parser.parse_args(["run", "--repo", "r", "--site", "a", "--site", "b",
                             "--state-store", "kubernetes", "--state-namespace", "ops",
                             "--lease-duration", "1m", "--adopt"])
    assert (run.site, run.state_store, run.state_namespace, run.lease_duration, run.adopt) \
        == (["a", "b"], "kubernetes", "ops", 60.0, True)
    sync = parser.parse_args(["sync", "--repo", "r", "--site", "a"])
    assert (sync.site, sync.state_store, sync.adopt) == ("a", "file", False)
    status = parser.parse_args(["status", "--state-store", "kubernetes"])
    assert status.state_store == "kubernetes" and status.state_namespace is None
