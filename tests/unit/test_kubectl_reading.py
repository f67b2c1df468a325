"""Everything kubectl reads, the reconciler reads, the same way: YAML 1.1 plain scalars,
`kind: List`, and files as large as real installs (issue #10, item 7)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli, contract, errors
from reconciler.manager import validate
from reconciler.repo import bundle, documents
from reconciler.repo import tree as trees
from reconciler.site import fence
from tests import gitrepo, sites

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
# prometheus-operator/prometheus-operator at 6adcebc5 (tests/corpus/PROVENANCE), byte for
# byte: its schema has `enum: ['!=', =, =~, '!~']` with the `=` written plain.
ALERTMANAGERCONFIG_CRD = (CORPUS / "prometheus-operator/example/prometheus-operator-crd/"
                          "monitoring.coreos.com_alertmanagerconfigs.yaml")
# argoproj/argo-cd's manifests/install.yaml (tests/corpus/PROVENANCE): 1.9 MB, ~60 documents.
ARGO_CD_INSTALL = CORPUS / "argo-cd/manifests/install.yaml"

SITE = "edge-a"
INTENT = f"""\
apiVersion: reconciler.dev/v1alpha1
kind: Intent
metadata:
  name: {SITE}
spec:
  id: i-1
"""

# The `kind: List` of the Kubernetes documentation's "Resource Quota Per PriorityClass"
# example (kubernetes/website, content/en/docs/concepts/policy/resource-quotas.md), its
# first two quotas, with a namespace and our intent annotation added.
QUOTA_LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ResourceQuota
  metadata:
    name: pods-high
    namespace: ran
    annotations:
      reconciler.dev/intent-id: i-1
  spec:
    hard:
      cpu: "1000"
      memory: 200Gi
      pods: "10"
    scopeSelector:
      matchExpressions:
      - operator : In
        scopeName: PriorityClass
        values: ["high"]
- apiVersion: v1
  kind: ResourceQuota
  metadata:
    name: pods-medium
    namespace: ran
    annotations:
      reconciler.dev/intent-id: i-0
  spec:
    hard:
      cpu: "10"
      memory: 20Gi
      pods: "10"
    scopeSelector:
      matchExpressions:
      - operator : In
        scopeName: PriorityClass
        values: ["medium"]
"""


def write(root: Path, rel: str, data: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def repo(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    """A fleet repository checkout with site edge-a's intent and `files`."""
    root = tmp_path / "repo"
    write(root, f"sites/{SITE}/intent.yaml", INTENT)
    for rel, data in files.items():
        write(root, rel, data)
    return root


def load(root: Path, **limits: Any) -> documents.Bundle:
    return bundle.load(tree=trees.DirTree(root), site=SITE, limits=bundle.Limits(**limits))


def one(data: bytes) -> Any:
    (_, doc), = bundle.parse_documents(data, file="m.yaml")
    return doc


def enums(node: Any) -> list[list[Any]]:
    """Every `enum` list in a schema, depth first."""
    found: list[list[Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            found.append(node["enum"])
        for value in node.values():
            found.extend(enums(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(enums(value))
    return found


# --- YAML 1.1 plain scalars -----------------------------------------------------------------


def test_alertmanagerconfig_crd_plain_equals_reads_as_the_string() -> None:
    """The real AlertmanagerConfig CRD, refused before as invalid YAML (YAML 1.1's `=` value
    tag), reads with its matchType enum holding the string "=", as kubectl reads it."""
    data = ALERTMANAGERCONFIG_CRD.read_bytes()
    assert b"\n                            - =\n" in data  # the plain `=` itself
    (_, crd), = bundle.parse_documents(data, file="crds/amc.yaml")
    assert ["!=", "=", "=~", "!~"] in enums(crd)


def test_plain_equals_reads_the_same_through_ruamels_constructor() -> None:
    """A document with anchors (read by ruamel's own constructor, not the plain builder)
    reads a plain `=` as the string too, alias included."""
    assert one(b"a: &eq =\nb: *eq\nc: [=, =~]\n") == {"a": "=", "b": "=", "c": ["=", "=~"]}


# What go-yaml v2 (go.yaml.in/yaml/v2 resolve.go, under sigs.k8s.io/yaml, under kubectl)
# makes of each plain scalar when it decodes into interface{}. (`.inf` and `.nan` it reads
# as floats that JSON cannot carry, so kubectl fails on them: guard.check_values refuses.)
KUBECTL_SCALARS = [
    ("yes", True), ("Yes", True), ("YES", True), ("y", True), ("Y", True), ("on", True),
    ("ON", True), ("true", True), ("True", True),
    ("no", False), ("No", False), ("n", False), ("N", False), ("off", False), ("Off", False),
    ("false", False), ("FALSE", False),
    ("0644", 420), ("0755", 493), ("-010", -8), ("0o17", 15), ("0x1F", 31), ("0", 0),
    ("1_000", 1000), ("42", 42), ("1e3", 1000.0), ("-1.5", -1.5),
    ("2024-01-02", "2024-01-02"), ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("1:20", "1:20"), ("=", "="), ("~", None), ("null", None), ("", None),
    ("yes please", "yes please"), ("0.10", 0.1), ("1.10", 1.1), ("089", 89),
]


@pytest.mark.parametrize(("text", "value"), KUBECTL_SCALARS, ids=[t or "empty" for t, _ in
                                                                   KUBECTL_SCALARS])
def test_plain_scalars_read_as_kubectl_reads_them(text: str, value: object) -> None:
    """Each plain scalar has kubectl's value and type, in both construction paths."""
    plain = one(f"v: {text}\n".encode())["v"]
    anchored = one(f"v: &a {text}\nw: 1\n".encode())["v"]
    for got in (plain, anchored):
        assert (type(got), got) == (type(value), value)


def test_quoted_scalars_stay_strings() -> None:
    """Quoting keeps a string a string, as with kubectl: `"yes"`, `'0644'`, `"="`."""
    assert one(b"a: \"yes\"\nb: '0644'\nc: \"=\"\n") == {"a": "yes", "b": "0644", "c": "="}


def test_secret_default_mode_is_octal_as_kubectl_sends_it() -> None:
    """`defaultMode: 0644` is 420 (rw-r--r--), as kubectl sends it, not 644."""
    doc = one(b"volumes:\n- name: s\n  secret:\n    secretName: s\n    defaultMode: 0644\n")
    assert doc["volumes"][0]["secret"]["defaultMode"] == 0o644


def amc_crd_excerpt() -> str:
    """The real CRD's first 106 lines (its header and the schema down to inhibitRules'
    sourceMatch, whose matchType enum has the plain `=`), closed after sourceMatch."""
    head = ALERTMANAGERCONFIG_CRD.read_text().splitlines(keepends=True)[:106]
    assert head[-1] == "                      x-kubernetes-list-type: atomic\n"
    return "".join(head) + (
        "                  type: object\n"
        "                type: array\n"
        "            type: object\n"
        "        type: object\n"
        "    served: true\n"
        "    storage: true\n")


def test_bundle_and_validate_read_the_alertmanagerconfig_crd(tmp_path: Path) -> None:
    """sync's bundle reads the real CRD from crds/; validate reads it too, finds no YAML
    error in it, and checks matchType against the enum with the plain `=` in it."""
    amc = """\
apiVersion: monitoring.coreos.com/v1alpha1
kind: AlertmanagerConfig
metadata:
  name: inhibit
  namespace: monitoring
  annotations:
    reconciler.dev/intent-id: i-1
spec:
  inhibitRules:
  - sourceMatch:
    - name: severity
      matchType: =
      value: critical
"""
    root = repo(tmp_path, {"crds/amc.yaml": ALERTMANAGERCONFIG_CRD.read_bytes(),
                           f"sites/{SITE}/manifests/amc.yaml": amc})
    loaded = load(root)
    assert [m.kind for m in loaded.crds] == ["CustomResourceDefinition"]
    (manifest,) = loaded.manifests
    assert manifest.body["spec"]["inhibitRules"][0]["sourceMatch"][0]["matchType"] == "="
    report = validate.run(options=validate.Options(root=root, jobs=1))
    # The whole CRD's schema has Go regexes Python's `re` refuses ((?i) mid-pattern, in
    # muteTimeIntervals): a `crd-schema` finding of the schema checker, not of reading.
    assert [str(f) for f in report.findings if f.rule != "crd-schema"] == []

    # The excerpt has no such pattern: "=" passes its enum, "==" does not.
    write(root, "crds/amc.yaml", amc_crd_excerpt())
    write(root, f"sites/{SITE}/manifests/bad.yaml",
          amc.replace("name: inhibit", "name: bad").replace("matchType: =", "matchType: =="))
    report = validate.run(options=validate.Options(root=root, jobs=1))
    assert [(f.location.file, f.line, f.path, f.rule) for f in report.findings] == [
        (f"sites/{SITE}/manifests/bad.yaml", 12,
         "$.spec.inhibitRules[0].sourceMatch[0].matchType", "crd-schema")]
    assert "'!=', '=', '=~', '!~'" in report.findings[0].message


# --- kind: List -------------------------------------------------------------------------------


def test_list_is_expanded_into_its_items_each_with_its_location(tmp_path: Path) -> None:
    """A `kind: List` is its items, each located by file, document and index in items."""
    root = repo(tmp_path, {f"sites/{SITE}/manifests/quotas.yaml": QUOTA_LIST})
    loaded = load(root)
    assert [m.describe() for m in loaded.manifests] == [
        "ResourceQuota/ran/pods-high", "ResourceQuota/ran/pods-medium"]
    assert [m.location.items for m in loaded.manifests] == [(0,), (1,)]
    assert str(loaded.manifests[1].location) == (
        f"sites/{SITE}/manifests/quotas.yaml:1 (document 1, items[1])")
    assert loaded.manifests[1].location.as_dict()["items"] == [1]


def test_the_fence_sees_each_item_of_a_list(tmp_path: Path) -> None:
    """The fence applies the item that carries the intent and drops the one that does not,
    naming the item."""
    loaded = load(repo(tmp_path, {f"sites/{SITE}/manifests/quotas.yaml": QUOTA_LIST}))
    decision = fence.decide(accepted=None, superseded=(), intent=loaded.intent,
                            manifests=loaded.manifests)
    assert [m.name for m in decision.apply] == ["pods-high"]
    (drop,) = decision.drops
    assert drop.manifest.name == "pods-medium"
    assert drop.manifest.location.item_path == "items[1]"


def test_list_item_without_kind_names_file_document_and_item(tmp_path: Path) -> None:
    """An item without apiVersion or kind is refused, naming the file, document and item."""
    bad = QUOTA_LIST.replace("- apiVersion: v1\n  kind: ResourceQuota\n  metadata:\n"
                             "    name: pods-medium", "- metadata:\n    name: pods-medium")
    root = repo(tmp_path, {f"sites/{SITE}/manifests/quotas.yaml": "a: 1\n---\n" + bad})
    with pytest.raises(errors.BundleError) as caught:
        load(root)
    assert str(caught.value) == (
        f"sites/{SITE}/manifests/quotas.yaml:2 (document 2, items[1]): an item of a List "
        "needs apiVersion and kind, as every object does")


def test_nested_lists_are_flattened_as_kubectl_flattens_them(tmp_path: Path) -> None:
    """A List inside a List is flattened (cli-runtime's FlattenListVisitor does so at any
    depth), each object located by its path of indexes."""
    nested = ("apiVersion: v1\nkind: List\nitems:\n"
              "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: ran}}\n"
              "- apiVersion: v1\n  kind: List\n  items:\n"
              "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: ran}}\n")
    loaded = load(repo(tmp_path, {f"sites/{SITE}/manifests/n.yaml": nested}))
    assert [(m.name, m.location.item_path) for m in loaded.manifests] == [
        ("a", "items[0]"), ("b", "items[1].items[0]")]


def test_list_with_items_not_a_list_is_refused() -> None:
    """A List whose items is not a list of objects is refused, naming the document."""
    location = documents.Location(file="m.yaml", document=0, line=1)
    with pytest.raises(bundle.ShapeError, match=r"^m\.yaml:1 \(document 1\): List's items must"):
        bundle.list_items({"apiVersion": "v1", "kind": "List", "items": {"a": 1}},
                          location=location)


def test_validate_checks_each_item_and_places_findings_on_the_item(tmp_path: Path) -> None:
    """validate checks every item: a finding names the item and the line of its field, and
    an item without a kind is a `manifest` finding at the item."""
    broken = QUOTA_LIST.replace('      pods: "10"\n    scopeSelector:\n'
                                '      matchExpressions:\n      - operator : In\n'
                                '        scopeName: PriorityClass\n        values: ["medium"]',
                                '      pods: "10"\n    scopes: 7')
    broken += "- metadata: {name: nameless}\n"
    root = repo(tmp_path, {f"sites/{SITE}/manifests/quotas.yaml": broken})
    report = validate.run(options=validate.Options(root=root, jobs=1))
    found = [(f.location.item_path, f.line, f.rule, f.path) for f in report.findings]
    assert found == [
        ("items[1]", 27, "intent-mismatch", "$.metadata.annotations['reconciler.dev/intent-id']"),
        ("items[1]", 33, "kube-schema", "$.spec.scopes"),
        ("items[2]", 34, "manifest", "$"),
    ]


# --- size limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("8Mi", 8 * 1024**2), ("512Ki", 512 * 1024), ("1G", 10**9), ("1Gi", 1024**3),
    ("64Mi", 64 * 1024**2), ("1000", 1000), ("2k", 2000), ("3M", 3 * 10**6), ("1Ti", 1024**4),
])
def test_sizes_are_read_as_kubernetes_quantities(text: str, size: int) -> None:
    """`8Mi`, `512Ki`, `1G` and plain bytes, as Kubernetes writes quantities."""
    assert bundle.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "8MB", "1.5Mi", "-1", "0", "Mi", "8 Mi", "8mi"])
def test_a_size_that_is_not_one_is_refused_naming_it(text: str) -> None:
    """Anything else is a ValueError quoting the text."""
    with pytest.raises(ValueError, match=f"invalid size {text!r}"):
        bundle.parse_size(text)


def test_default_limits_read_argo_cds_install_yaml(tmp_path: Path) -> None:
    """Argo CD's install.yaml (1.9 MB) loads under the default limits, and is refused under
    a 1Mi limit with its size, the limit and the flag that raises it."""
    size = ARGO_CD_INSTALL.stat().st_size
    assert size > 1024 * 1024
    root = repo(tmp_path, {})
    shutil.copy(ARGO_CD_INSTALL, root / "crds.yaml")  # not read: not under crds/
    (root / "crds").mkdir()
    shutil.copy(ARGO_CD_INSTALL, root / "crds" / "install.yaml")
    assert len(load(root).crds) >= 50
    with pytest.raises(errors.BundleError) as caught:
        load(root, max_file_bytes=1024 * 1024)
    assert str(caught.value) == (
        f"crds/install.yaml: file is {size} bytes, over the limit of 1048576 bytes (1Mi); "
        "raise it with --max-file-size")


def test_site_over_the_total_limit_is_refused_naming_the_site(tmp_path: Path) -> None:
    """Files each under the file limit but together over the site's are refused, naming the
    site, the limit and the flag."""
    filler = "# " + "x" * 4000 + "\n"  # a generated file of ~4 KB, a comment only
    root = repo(tmp_path, {f"sites/{SITE}/manifests/{n}.yaml": filler for n in "abc"})
    assert load(root, max_site_bytes=13_000).manifests == ()
    with pytest.raises(errors.BundleError) as caught:
        load(root, max_site_bytes=12_000)
    assert str(caught.value).startswith(f"site {SITE}: its files hold ")
    assert str(caught.value).endswith(
        "over the limit of 12000 bytes per site; raise it with --max-site-size")


def test_validate_reports_a_site_over_the_total_limit(tmp_path: Path) -> None:
    """validate's `limit` finding for a site over the total counts crds/ too, as sync does."""
    filler = "# " + "x" * 4000 + "\n"
    root = repo(tmp_path, {"crds/big.yaml": filler, f"sites/{SITE}/manifests/a.yaml": filler})
    limits = bundle.Limits(max_site_bytes=8000)
    report = validate.run(options=validate.Options(root=root, jobs=1, limits=limits))
    (finding,) = [f for f in report.findings if f.rule == "limit"]
    assert finding.location.file == f"sites/{SITE}/"
    assert finding.message.endswith("over the limit of 8000 bytes per site; raise it with "
                                    "--max-site-size")
    assert validate.run(options=validate.Options(
        root=root, jobs=1, limits=bundle.Limits(max_site_bytes=8 * 1024))).findings == ()


def test_validate_flags_set_the_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       ) -> None:
    """`validate --max-file-size 1Mi` refuses Argo CD's install.yaml; the default reads it."""
    root = repo(tmp_path, {"crds/install.yaml": ARGO_CD_INSTALL.read_bytes()})
    cli.main(["validate", str(root), "--max-file-size", "1Mi", "-o", "json"])
    assert "over the limit of 1048576 bytes (1Mi); raise it with --max-file-size" in (
        capsys.readouterr().out)
    cli.main(["validate", str(root), "-o", "json"])
    assert "--max-file-size" not in capsys.readouterr().out


def test_a_bad_size_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A size flag that is not a size stops the command with a usage error (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["plan", "--repo", ".", "--site", SITE, "--max-site-size", "lots"])
    assert caught.value.code == 2
    assert "invalid size 'lots'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["sync", "--repo", "r", "--site", SITE], ["run", "--repo", "r", "--site", SITE],
    ["validate"], ["plan", "--repo", "r", "--site", SITE],
    ["intent", "publish", "--site", SITE, "-m", "m"],
])
def test_every_command_that_reads_a_site_takes_the_limit_flags(command: list[str]) -> None:
    """sync, run, validate, plan and intent publish take both flags, with the same defaults."""
    parser = cli.build_parser()
    args = parser.parse_args([*command, "--max-file-size", "512Ki", "--max-site-size", "1G"])
    assert (args.max_file_size, args.max_site_size) == (512 * 1024, 10**9)
    defaults = parser.parse_args(command)
    assert (defaults.max_file_size, defaults.max_site_size) == (8 * 1024**2, 64 * 1024**2)


# --- sync reads them too ---------------------------------------------------------------------

SAMPLE_ID = "sfo-baseline-1"  # edge-sfo-01's intent in the sample repository
CONFIGMAP_LIST = f"""\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: listed-current
    namespace: sfo-ran
    annotations:
      reconciler.dev/intent-id: {SAMPLE_ID}
  data:
    enabled: "yes"
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: listed-stale
    namespace: sfo-ran
    annotations:
      reconciler.dev/intent-id: sfo-baseline-0
"""


def test_sync_applies_a_lists_items_and_drops_the_stale_one(
        tmp_path: Path, remote: gitrepo.GitRemote) -> None:
    """sync applies the List's item that carries the intent and drops the other, naming it
    by file and item; the AlertmanagerConfig CRD in crds/ is read and applied."""
    env = sites.Env(tmp_path, remote)
    remote.write(f"sites/{sites.SITE}/manifests/list.yaml", CONFIGMAP_LIST)
    remote.write("crds/amc.yaml", ALERTMANAGERCONFIG_CRD.read_text())
    remote.commit_and_push("A List, and the AlertmanagerConfig CRD")
    result = env.sync()
    assert result.ok, result.message
    applied = {str(r.ref) for r in result.results}
    assert "ConfigMap/sfo-ran/listed-current" in applied
    assert "ConfigMap/sfo-ran/listed-stale" not in applied
    assert any("alertmanagerconfigs.monitoring.coreos.com" in ref for ref in applied)
    (drop,) = [d for d in result.drops if d.manifest.name == "listed-stale"]
    assert str(drop.manifest.location).endswith("list.yaml:1 (document 1, items[1])")


def test_sync_refuses_a_site_over_its_limit_naming_the_flag(
        tmp_path: Path, remote: gitrepo.GitRemote) -> None:
    """With --max-site-size below what the site holds, the pass fails before anything is
    applied, naming the site, the limit and the flag."""
    env = sites.Env(tmp_path, remote)
    env.options = dataclasses.replace(env.options, limits=bundle.Limits(max_site_bytes=1024))
    result = env.sync()
    assert not result.ok
    assert f"site {sites.SITE}: its files hold" in result.message
    assert "over the limit of 1024 bytes (1Ki) per site; raise it with --max-site-size" in (
        result.message)
    assert env.cluster.objects == {}


def test_publish_refuses_a_file_over_the_limit_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`intent publish --max-file-size` holds the site's manifests to the limit sync will:
    a file over it fails the publish (exit 1), naming it and the flag, and nothing is written."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Manager")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "manager@example.com")
    fleet = gitrepo.GitRemote(tmp_path / "git")
    fleet.copy_from(contract.sample_repo_dir())
    fleet.commit_and_push("Baseline")
    before = {p: p.read_bytes() for p in sorted(fleet.work.rglob("*.yaml"))}
    code = cli.main(["intent", "publish", "--repo", str(fleet.work), "--site", sites.SITE,
                     "-m", "try", "--max-file-size", "512"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert "over the limit of 512 bytes; raise it with --max-file-size" in err
    assert {p: p.read_bytes() for p in sorted(fleet.work.rglob("*.yaml"))} == before
