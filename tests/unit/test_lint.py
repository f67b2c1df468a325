"""`reconciler validate`: every rule with its exact location, exit codes, output formats."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli, contract
from reconciler.manager import kubeschema, validate
from reconciler.repo import bundle, schemas
from reconciler.repo import tree as trees

SITE = "edge-a"
INTENT_ID = "i-1"

INTENT = """\
apiVersion: reconciler.dev/v1alpha1
kind: Intent
metadata:
  name: {site}
spec:
  id: {id}
"""

# A ConfigMap that breaks no rule; its lines are numbered 1 to 9.
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {namespace}
  annotations:
    reconciler.dev/intent-id: i-1
data:
  key: value
"""

# A CRD of a namespaced kind with the schema features the checks translate: a nullable
# field, an int-or-string field, a subtree that keeps unknown fields; v0 is not served.
GADGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.org
spec:
  group: example.org
  scope: Namespaced
  names: {kind: Gadget, listKind: GadgetList, plural: gadgets, singular: gadget}
  versions:
    - name: v0
      served: false
      storage: false
      schema:
        openAPIV3Schema: {type: object}
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
                note: {type: string, nullable: true}
                label: {type: string}
                port: {x-kubernetes-int-or-string: true}
                maybePort: {x-kubernetes-int-or-string: true, nullable: true}
                extra:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
"""

# A Gadget whose spec fields start on line 9.
GADGET = """\
apiVersion: {api}
kind: Gadget
metadata:
  name: g
  namespace: ran
  annotations:
    reconciler.dev/intent-id: i-1
spec:
"""


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_repo(tmp_path: Path, *, sites: tuple[str, ...] = (SITE,), crds: bool = True) -> Path:
    """A repository whose sites each hold an intent with id i-1, with the sample CRDs."""
    root = tmp_path / "repo"
    for site in sites:
        write(root, f"sites/{site}/intent.yaml", INTENT.format(site=site, id=INTENT_ID))
    if crds:
        shutil.copytree(contract.sample_repo_dir() / "crds", root / "crds")
    return root


def manifest(root: Path, name: str, text: str, *, site: str = SITE) -> str:
    """Write a manifest of the site; return its repository-relative path."""
    rel = f"sites/{site}/manifests/{name}"
    write(root, rel, text)
    return rel


def gadget(spec: str, *, api: str = "example.org/v1") -> str:
    return GADGET.format(api=api) + spec


def check(root: Path, **options: object) -> validate.Report:
    return validate.run(options=validate.Options(root=root, jobs=1, **options))  # type: ignore[arg-type]


def where(finding: schemas.Finding) -> tuple[object, ...]:
    """Everything that locates and classifies a finding."""
    return (finding.location.file, finding.line, finding.column, finding.object, finding.path,
            finding.rule, finding.severity.value)


def locations(report: validate.Report) -> list[tuple[object, ...]]:
    return [where(f) for f in report.findings]


def only(report: validate.Report) -> schemas.Finding:
    assert len(report.findings) == 1, locations(report)
    return report.findings[0]


def validate_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- the sample repository and clean repositories ------------------------------------------


def test_sample_repository_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped sample repository validates with exit 0 and not even a warning."""
    report = check(contract.sample_repo_dir())
    assert report.findings == ()
    assert report.sites == ("edge-nyc-02", "edge-sfo-01")
    code, out, _ = validate_cli(capsys, str(contract.sample_repo_dir()))
    assert code == 0
    assert out.startswith("ok: 2 sites, 12 files, 14 documents checked in ")
    assert len(out.strip().splitlines()) == 1


def test_clean_repository_reports_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A repository without findings prints one `ok:` line naming what was checked."""
    root = make_repo(tmp_path, crds=False)
    manifest(root, "cm.yaml", CONFIGMAP.format(name="cm", namespace="ran"))
    code, out, err = validate_cli(capsys, str(root))
    assert code == 0
    assert re.fullmatch(r"ok: 1 site, 2 files, 2 documents checked in \d+\.\d\ds "
                        r"\(Kubernetes \d+\.\d+ schemas\)\n", out)
    assert err == ""


# --- YAML and limits -----------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    """Invalid YAML is one `yaml` error at the line and column the parser stopped at."""
    root = make_repo(tmp_path)
    rel = manifest(root, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: name: x\n")
    finding = only(check(root))
    assert where(finding) == (rel, 3, 15, "", "$", "yaml", "error")
    assert finding.message == "invalid YAML: mapping values are not allowed in this context"


def test_file_over_the_size_limit_is_a_limit_error(tmp_path: Path) -> None:
    """A file larger than the per-file limit (8Mi by default) is a `limit` error naming its
    size, the limit and the flag that raises it."""
    root = make_repo(tmp_path)
    size = bundle.Limits().max_file_bytes + 1
    assert size == 8 * 1024 * 1024 + 1
    rel = manifest(root, "big.yaml", b"#" * size)
    finding = only(check(root))
    assert where(finding) == (rel, None, None, "", "$", "limit", "error")
    assert finding.message == (f"file is {size} bytes, over the limit of "
                               f"{bundle.Limits().max_file_bytes} bytes (8Mi); raise it with "
                               "--max-file-size")


def test_file_with_too_many_documents_is_a_limit_error(tmp_path: Path) -> None:
    """A file with more documents than the per-file limit is a `limit` error."""
    root = make_repo(tmp_path)
    count = bundle.Limits().max_documents + 1
    rel = manifest(root, "many.yaml", "a: 1\n---\n" * (count - 1) + "a: 1\n")
    finding = only(check(root))
    assert where(finding) == (rel, None, None, "", "$", "limit", "error")
    assert finding.message == (f"{count} documents, over the limit of "
                               f"{bundle.Limits().max_documents}")


@dataclasses.dataclass(frozen=True)
class _TwoFiles(bundle.Limits):
    max_files: int = 2


def test_site_with_more_manifest_files_than_the_limit(tmp_path: Path) -> None:
    """A site with more manifest files than the per-site limit gets a `limit` error."""
    root = make_repo(tmp_path, crds=False)
    for name in ("a", "b", "c"):
        manifest(root, f"{name}.yaml", CONFIGMAP.format(name=name, namespace="ran"))
    limits = [where(f) for f in check(root, limits=_TwoFiles()).findings if f.rule == "limit"]
    assert limits == [(f"sites/{SITE}/manifests/", None, None, "", "$", "limit", "error")]


def test_site_at_exactly_the_file_limit_passes_as_sync_reads_it(tmp_path: Path) -> None:
    """A site with exactly the limit of manifest files, which sync loads, has no `limit`."""
    root = make_repo(tmp_path, crds=False)
    for name in ("a", "b"):
        manifest(root, f"{name}.yaml", CONFIGMAP.format(name=name, namespace="ran"))
    loaded = bundle.load(tree=trees.DirTree(root), site=SITE, limits=_TwoFiles())
    assert len(loaded.manifests) == 2  # what a site reads
    assert [f for f in check(root, limits=_TwoFiles()).findings if f.rule == "limit"] == []


# --- the intent ----------------------------------------------------------------------------


def test_missing_intent_is_an_error(tmp_path: Path) -> None:
    """A site folder without intent.yaml gets an `intent-missing` error on that path."""
    root = make_repo(tmp_path, sites=())
    manifest(root, "cm.yaml", CONFIGMAP.format(name="cm", namespace="ran"))
    finding = only(check(root))
    assert where(finding) == (f"sites/{SITE}/intent.yaml", None, None, "", "$",
                              "intent-missing", "error")


def test_unknown_intent_field_is_reported_at_its_own_line(tmp_path: Path) -> None:
    """A field the intent schema does not declare is a `schema` error at that field."""
    root = make_repo(tmp_path)
    write(root, f"sites/{SITE}/intent.yaml",
          INTENT.format(site=SITE, id=INTENT_ID) + "  description: x\n  colour: red\n")
    finding = only(check(root))
    assert where(finding) == (f"sites/{SITE}/intent.yaml", 8, 3, "", "$.spec.colour", "schema",
                              "error")
    assert finding.message == "field 'colour' is not declared in the schema"


def test_bad_intent_id_is_a_schema_error_at_the_id(tmp_path: Path) -> None:
    """An intent id outside [A-Za-z0-9._-]{1,63} is a `schema` error at spec.id."""
    root = make_repo(tmp_path)
    write(root, f"sites/{SITE}/intent.yaml", INTENT.format(site=SITE, id="'bad id!'"))
    finding = only(check(root))
    assert where(finding) == (f"sites/{SITE}/intent.yaml", 6, 3, "", "$.spec.id", "schema",
                              "error")
    assert "'bad id!' does not match" in finding.message


def test_intent_naming_another_site_is_an_error(tmp_path: Path) -> None:
    """An intent whose metadata.name is not its folder's site is an `intent-site` error."""
    root = make_repo(tmp_path)
    write(root, f"sites/{SITE}/intent.yaml", INTENT.format(site="edge-b", id=INTENT_ID))
    finding = only(check(root))
    assert where(finding) == (f"sites/{SITE}/intent.yaml", 4, 3, "", "$.metadata.name",
                              "intent-site", "error")
    assert finding.message == "names site 'edge-b' but lives in the folder of site 'edge-a'"


def test_intent_with_two_documents_is_an_error(tmp_path: Path) -> None:
    """An intent.yaml holding two documents is one `intent` error on the file."""
    root = make_repo(tmp_path)
    text = INTENT.format(site=SITE, id=INTENT_ID)
    write(root, f"sites/{SITE}/intent.yaml", text + "---\n" + text)
    finding = only(check(root))
    assert where(finding) == (f"sites/{SITE}/intent.yaml", None, None, "", "$", "intent",
                              "error")
    assert finding.message == "expected exactly one YAML document, found 2"


# --- the object rules sync enforces --------------------------------------------------------


def test_document_that_is_a_list_is_a_manifest_error(tmp_path: Path) -> None:
    """A manifest document that is a list is a `manifest` error at the list's start."""
    root = make_repo(tmp_path)
    rel = manifest(root, "list.yaml", CONFIGMAP.format(name="cm", namespace="ran")
                   + "---\n- a\n- b\n")
    finding = only(check(root))
    assert where(finding) == (rel, 11, 1, "", "$", "manifest", "error")
    assert finding.location.document == 1
    assert finding.message == "a manifest must be a mapping (an object), not list"


def test_missing_name_is_a_required_field_error_at_metadata(tmp_path: Path) -> None:
    """A manifest without metadata.name is a `required-field` error at its metadata."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace("  name: cm\n", "")
    rel = manifest(root, "cm.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 3, 1, "ConfigMap/ran/", "$.metadata.name", "required-field",
                              "error")


def test_bool_label_value_is_a_metadata_error_at_the_label(tmp_path: Path) -> None:
    """A label whose value is a bool is a `metadata` error at that label."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "  annotations:\n", "  labels:\n    enabled: true\n  annotations:\n")
    rel = manifest(root, "cm.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 7, 5, "ConfigMap/ran/cm", "$.metadata.labels.enabled",
                              "metadata", "error")
    assert finding.message == "value must be a string, not bool (quote it)"


def test_wave_that_is_not_an_integer_is_a_wave_error(tmp_path: Path) -> None:
    """A wave annotation that is not an integer is a `wave` error at the annotation."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "  annotations:\n", "  annotations:\n    reconciler.dev/wave: early\n")
    rel = manifest(root, "cm.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 7, 5, "ConfigMap/ran/cm",
                              "$.metadata.annotations['reconciler.dev/wave']", "wave", "error")
    assert finding.message == "wave must be an integer, not 'early'"


def test_malformed_intent_id_annotation_is_an_intent_id_error(tmp_path: Path) -> None:
    """An intent-id annotation that is no valid id is an `intent-id` error at it."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "intent-id: i-1", "intent-id: 'has space'")
    rel = manifest(root, "cm.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 7, 5, "ConfigMap/ran/cm",
                              "$.metadata.annotations['reconciler.dev/intent-id']", "intent-id",
                              "error")


# --- custom resources against CRDs ---------------------------------------------------------


def gadget_repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path)
    write(root, "crds/gadgets.yaml", GADGET_CRD)
    return root


def test_crd_field_of_the_wrong_type_is_a_crd_schema_error(tmp_path: Path) -> None:
    """A custom resource field of the wrong type is a `crd-schema` error at that field."""
    root = gadget_repo(tmp_path)
    rel = manifest(root, "g.yaml", gadget("  label: x\n  size: big\n"))
    finding = only(check(root))
    assert where(finding) == (rel, 10, 3, "Gadget/ran/g", "$.spec.size", "crd-schema", "error")
    assert finding.message == "(CRD gadgets.example.org, v1) 'big' is not of type 'integer'"


def test_crd_undeclared_field_is_reported_at_that_field(tmp_path: Path) -> None:
    """A field the CRD's schema does not declare is a `crd-schema` error at its own line."""
    root = gadget_repo(tmp_path)
    rel = manifest(root, "g.yaml", gadget("  size: 1\n  colour: red\n  label: x\n"))
    finding = only(check(root))
    assert where(finding) == (rel, 10, 3, "Gadget/ran/g", "$.spec.colour", "crd-schema", "error")
    assert finding.message == ("(CRD gadgets.example.org, v1) field 'colour' is not declared "
                               "in the schema")


def test_crd_preserve_unknown_fields_subtree_is_not_checked(tmp_path: Path) -> None:
    """Fields under an x-kubernetes-preserve-unknown-fields subtree are not reported."""
    root = gadget_repo(tmp_path)
    manifest(root, "g.yaml", gadget("  extra:\n    anything:\n      goes: [1, 2]\n"))
    assert check(root).findings == ()


def test_crd_nullable_field_accepts_null_and_others_do_not(tmp_path: Path) -> None:
    """`nullable: true` lets a field be null; a field without it may not be."""
    root = gadget_repo(tmp_path)
    rel = manifest(root, "g.yaml", gadget("  note: null\n  label: null\n"))
    finding = only(check(root))
    assert where(finding) == (rel, 10, 3, "Gadget/ran/g", "$.spec.label", "crd-schema", "error")
    assert finding.message.endswith("None is not of type 'string'")


def test_crd_int_or_string_accepts_both_and_nothing_else(tmp_path: Path) -> None:
    """An x-kubernetes-int-or-string field takes an integer or a string, not a list."""
    root = gadget_repo(tmp_path)
    manifest(root, "a.yaml", gadget("  port: 8080\n").replace("name: g", "name: a"))
    manifest(root, "b.yaml", gadget("  port: http\n").replace("name: g", "name: b"))
    rel = manifest(root, "c.yaml", gadget("  port: [1]\n").replace("name: g", "name: c"))
    finding = only(check(root))
    assert where(finding) == (rel, 9, 3, "Gadget/ran/c", "$.spec.port", "crd-schema", "error")


def test_crd_nullable_int_or_string_accepts_null(tmp_path: Path) -> None:
    """A field both int-or-string and nullable may be null, as the API server allows."""
    root = gadget_repo(tmp_path)
    manifest(root, "g.yaml", gadget("  maybePort: null\n"))
    assert check(root).findings == ()


def test_version_the_crd_does_not_serve_is_a_crd_version_error(tmp_path: Path) -> None:
    """A custom resource in a version its CRD does not serve is a `crd-version` error."""
    root = gadget_repo(tmp_path)
    rel = manifest(root, "g.yaml", gadget("  size: 1\n", api="example.org/v0"))
    finding = only(check(root))
    assert where(finding) == (rel, 1, 1, "Gadget/ran/g", "$.apiVersion", "crd-version", "error")
    assert finding.message == ("no CRD in the repository serves Gadget in example.org/v0 "
                               "(served: example.org/v1)")


def test_crd_in_a_site_manifests_folder_is_used(tmp_path: Path) -> None:
    """A CRD among a site's manifests defines its kind for that site's resources."""
    root = make_repo(tmp_path)
    crd = manifest(root, "00-crd.yaml", GADGET_CRD)
    rel = manifest(root, "10-g.yaml", gadget("  size: big\n"))
    report = check(root)
    assert locations(report) == [
        # the CRD itself carries no intent id, like any manifest without one
        (crd, 3, 1, "CustomResourceDefinition/gadgets.example.org", "$.metadata",
         "intent-mismatch", "warning"),
        (rel, 9, 3, "Gadget/ran/g", "$.spec.size", "crd-schema", "error"),
    ]


def test_crd_in_one_site_does_not_define_the_kind_for_another(tmp_path: Path) -> None:
    """A CRD among site A's manifests does not exist in site B's cluster, so B's resource
    of that kind is not checked against it."""
    root = make_repo(tmp_path, sites=(SITE, "edge-b"))
    manifest(root, "00-crd.yaml", GADGET_CRD)
    rel = manifest(root, "10-g.yaml", gadget("  size: 1\n", api="example.org/v0"),
                   site="edge-b")
    findings = [where(f) for f in check(root, sites=("edge-b",)).findings]
    assert findings == [(rel, 2, 1, "Gadget/ran/g", "$.kind", "unknown-kind", "warning")]
    both = [where(f) for f in check(root).findings if f.location.file == rel]
    assert both == findings


# --- built-in kinds against Kubernetes' schemas --------------------------------------------


def test_configmap_with_a_number_value_is_a_kube_schema_error(tmp_path: Path) -> None:
    """A ConfigMap data value that is not a string is a `kube-schema` error at its key."""
    root = make_repo(tmp_path)
    rel = manifest(root, "cm.yaml", CONFIGMAP.format(name="cm", namespace="ran")
                   + "  port: 8080\n")
    finding = only(check(root))
    assert where(finding) == (rel, 10, 3, "ConfigMap/ran/cm", "$.data.port", "kube-schema",
                              "error")
    assert finding.message == (f"(Kubernetes {kubeschema.versions()[-1]}) 8080 is not of type "
                               "'string', 'null'")


DEPLOYMENT = """\
apiVersion: {api}
kind: Deployment
metadata:
  name: web
  namespace: ran
  annotations:
    reconciler.dev/intent-id: i-1
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx}}]
"""


def test_deployment_with_string_replicas_is_a_kube_schema_error(tmp_path: Path) -> None:
    """A Deployment with `replicas: "3"` is a `kube-schema` error at spec.replicas."""
    root = make_repo(tmp_path)
    rel = manifest(root, "d.yaml", DEPLOYMENT.format(api="apps/v1", replicas='"3"'))
    finding = only(check(root))
    assert where(finding) == (rel, 9, 3, "Deployment/ran/web", "$.spec.replicas",
                              "kube-schema", "error")
    assert "'3' is not of type 'integer'" in finding.message


def test_unknown_field_in_a_builtin_kind_is_reported_at_that_field(tmp_path: Path) -> None:
    """A field Kubernetes does not declare for a built-in kind is a `kube-schema` error."""
    root = make_repo(tmp_path)
    text = DEPLOYMENT.format(api="apps/v1", replicas="3").replace(
        "      containers:", "      hostname: web\n      restart: always\n      containers:")
    rel = manifest(root, "d.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 15, 7, "Deployment/ran/web", "$.spec.template.spec.restart",
                              "kube-schema", "error")
    assert finding.message.endswith("field 'restart' is not declared in the schema")


def test_builtin_group_version_kubernetes_does_not_serve_is_an_error(tmp_path: Path) -> None:
    """`apps/v1beta1 Deployment` is an `unknown-kind` error at the kind."""
    root = make_repo(tmp_path)
    rel = manifest(root, "d.yaml", DEPLOYMENT.format(api="apps/v1beta1", replicas="3"))
    finding = only(check(root))
    assert where(finding) == (rel, 2, 1, "Deployment/ran/web", "$.kind", "unknown-kind", "error")
    assert re.fullmatch(r"Kubernetes \d+\.\d+ serves no kind Deployment in apps/v1beta1",
                        finding.message)


def test_unknown_custom_group_is_only_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kind of a group no CRD or schema knows is an `unknown-kind` warning; exit stays 0."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="w", namespace="ran").replace(
        "apiVersion: v1\nkind: ConfigMap", "apiVersion: example.com/v1\nkind: Widget")
    rel = manifest(root, "w.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 2, 1, "Widget/ran/w", "$.kind", "unknown-kind", "warning")
    code, out, _ = validate_cli(capsys, str(root))
    assert code == 0
    assert "0 error(s), 1 warning(s): " in out


def test_shipped_schema_is_used_when_no_crd_defines_the_kind(tmp_path: Path) -> None:
    """Without crds/, a NetworkFunction is checked against schemas/networkfunction."""
    root = make_repo(tmp_path, crds=False)
    text = gadget("  type: XYZ\n  version: '1'\n  clusterRef: wc\n",
                  api="telco.example.com/v1alpha1").replace("kind: Gadget",
                                                            "kind: NetworkFunction")
    rel = manifest(root, "nf.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 9, 3, "NetworkFunction/ran/g", "$.spec.type", "schema",
                              "error")
    assert finding.message == "'XYZ' is not one of ['UPF', 'SMF', 'AMF', 'NRF']"


# --- namespace scope -----------------------------------------------------------------------


def test_namespaced_kind_without_namespace_is_an_error(tmp_path: Path) -> None:
    """A namespaced kind without metadata.namespace is a `namespace-missing` error."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace("  namespace: ran\n", "")
    rel = manifest(root, "cm.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 3, 1, "ConfigMap/cm", "$.metadata", "namespace-missing",
                              "error")


def test_namespace_of_a_cluster_scoped_kind_is_a_warning(tmp_path: Path) -> None:
    """A Namespace object with a metadata.namespace is a `namespace-ignored` warning."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="ran", namespace="other").replace(
        "kind: ConfigMap", "kind: Namespace").replace("data:\n  key: value\n", "")
    rel = manifest(root, "ns.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 5, 3, "Namespace/other/ran", "$.metadata.namespace",
                              "namespace-ignored", "warning")


def test_cluster_scoped_device_taint_rule_needs_no_namespace(tmp_path: Path) -> None:
    """DeviceTaintRule is cluster-scoped, so it needs no metadata.namespace."""
    root = make_repo(tmp_path)
    manifest(root, "dtr.yaml", """\
apiVersion: resource.k8s.io/v1
kind: DeviceTaintRule
metadata:
  name: t
  annotations:
    reconciler.dev/intent-id: i-1
spec:
  taint: {key: k, effect: NoSchedule}
""")
    assert [f.rule for f in check(root).findings] == []


# --- duplicates ----------------------------------------------------------------------------


def test_object_defined_twice_in_a_site_is_an_error_on_the_second(tmp_path: Path) -> None:
    """The second definition of an object in a site is a `duplicate` naming the first."""
    root = make_repo(tmp_path)
    first = manifest(root, "a.yaml", CONFIGMAP.format(name="cm", namespace="ran"))
    second = manifest(root, "b.yaml", "# again\n" + CONFIGMAP.format(name="cm", namespace="ran"))
    finding = only(check(root))
    assert where(finding) == (second, 5, 3, "ConfigMap/ran/cm", "$.metadata.name", "duplicate",
                              "error")
    assert finding.message == (f"ConfigMap/ran/cm is defined twice in site {SITE}: first at "
                               f"{first}:1 (document 1)")


def test_same_object_in_two_sites_or_two_namespaces_is_no_duplicate(tmp_path: Path) -> None:
    """One object in two sites, or one name in two namespaces, is not a duplicate."""
    root = make_repo(tmp_path, sites=(SITE, "edge-b"))
    manifest(root, "a.yaml", CONFIGMAP.format(name="cm", namespace="ran"))
    manifest(root, "a.yaml", CONFIGMAP.format(name="cm", namespace="ran"), site="edge-b")
    manifest(root, "b.yaml", CONFIGMAP.format(name="cm", namespace="core"))
    assert check(root).findings == ()


# --- intent consistency --------------------------------------------------------------------


def test_manifest_with_another_intent_id_is_a_warning_at_the_annotation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest carrying another intent id is an `intent-mismatch` warning at the id;
    an error with --strict, which then exits 1."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace("i-1", "i-0")
    rel = manifest(root, "cm.yaml", text)
    finding = only(check(root))
    assert where(finding) == (rel, 7, 5, "ConfigMap/ran/cm",
                              "$.metadata.annotations['reconciler.dev/intent-id']",
                              "intent-mismatch", "warning")
    assert finding.message == f"carries intent 'i-0', not 'i-1' of site {SITE}: the site would " \
                              "drop it"
    assert validate_cli(capsys, str(root))[0] == 0
    strict = only(check(root, strict=True))
    assert where(strict)[5:] == ("intent-mismatch", "error")
    code, out, _ = validate_cli(capsys, str(root), "--strict")
    assert code == 1
    assert "1 error(s), 0 warning(s)" in out


def test_manifest_without_intent_id_is_a_warning(tmp_path: Path) -> None:
    """A manifest with no intent id is an `intent-mismatch` warning at its annotations,
    or at its metadata when it has no annotations."""
    root = make_repo(tmp_path)
    other = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "    reconciler.dev/intent-id: i-1\n", "    team: core\n")
    bare = CONFIGMAP.format(name="bare", namespace="ran").replace(
        "  annotations:\n    reconciler.dev/intent-id: i-1\n", "")
    first = manifest(root, "a.yaml", other)
    second = manifest(root, "b.yaml", bare)
    assert locations(check(root)) == [
        (first, 6, 3, "ConfigMap/ran/cm", "$.metadata.annotations", "intent-mismatch",
         "warning"),
        (second, 3, 1, "ConfigMap/ran/bare", "$.metadata", "intent-mismatch", "warning"),
    ]
    assert check(root).findings[0].message == (
        f"carries no intent id; site {SITE} would drop it (its intent is 'i-1')")


# --- files and sites -----------------------------------------------------------------------


def test_json_file_in_manifests_is_an_ignored_file_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .json file in a manifests folder is an `ignored-file` warning: sync skips it."""
    root = make_repo(tmp_path)
    rel = manifest(root, "cm.json", "{}")
    finding = only(check(root))
    assert where(finding) == (rel, None, None, "", "$", "ignored-file", "warning")
    code, out, _ = validate_cli(capsys, str(root))
    assert code == 0
    assert out.splitlines()[0] == (f"{rel}: warning: not read by the reconciler: only .yaml "
                                   "and .yml files are manifests [ignored-file]")


def test_yaml_outside_a_sites_manifests_folder_is_an_ignored_file_warning(
        tmp_path: Path) -> None:
    """A manifest put beside `manifests/` (a typo like `manifest/`) is flagged: sync never
    reads it."""
    root = make_repo(tmp_path)
    write(root, f"sites/{SITE}/manifest/cm.yaml", CONFIGMAP)
    finding = only(check(root))
    assert where(finding) == (f"sites/{SITE}/manifest/cm.yaml", None, None, "", "$",
                              "ignored-file", "warning")
    assert finding.message == ("not read by the reconciler: a site's manifests live in "
                               f"sites/{SITE}/manifests/")


def test_invalid_site_folder_name_is_a_site_name_error(tmp_path: Path) -> None:
    """A site folder name that is no valid site name is a `site-name` error."""
    root = make_repo(tmp_path, sites=())
    write(root, "sites/Edge_A/intent.yaml", INTENT.format(site="edge-a", id=INTENT_ID))
    report = check(root)
    assert locations(report) == [
        ("sites/Edge_A", None, None, "", "$", "site-name", "error"),
        ("sites/Edge_A/intent.yaml", 4, 3, "", "$.metadata.name", "intent-site", "error"),
    ]


# --- usage errors and exit codes -----------------------------------------------------------


def test_usage_errors_exit_2_with_a_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing path, a path without sites/, an unknown site or Kubernetes version exit 2."""
    root = make_repo(tmp_path, sites=(SITE, "edge-b"))
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "nope")], f"{tmp_path / 'nope'}: no such directory"),
        ([str(tmp_path / "empty")], "no sites/ folder; is this a fleet repository checkout?"),
        ([str(root), "--site", "edge-c"],
         f"sites/edge-c/: no such site in {root} (sites: edge-a, edge-b)"),
        ([str(root), "--kube-version", "0.1"], "no schemas for Kubernetes '0.1'; installed: "),
    ]
    for argv, message in cases:
        code, out, err = validate_cli(capsys, *argv)
        assert code == 2, argv
        assert out == ""
        assert err.startswith("reconciler: error: ") and message in err, err


def test_kube_version_selects_the_schemas(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--kube-version 1.36` checks built-in kinds against Kubernetes 1.36's schemas."""
    root = make_repo(tmp_path)
    manifest(root, "cm.yaml", CONFIGMAP.format(name="cm", namespace="ran") + "  port: 1\n")
    report = check(root, kube_version="v1.36.4")
    assert report.kube_version == "1.36"
    assert only(report).message == "(Kubernetes 1.36) 1 is not of type 'string', 'null'"
    code, out, _ = validate_cli(capsys, str(root), "--kube-version", "1.36")
    assert code == 1
    assert out.rstrip().endswith("(Kubernetes 1.36 schemas)")


def test_symlink_in_a_site_is_a_usage_error_and_not_followed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A symbolic link in a site's files, to a file or a folder, stops validate with exit 2
    instead of reading what it points to."""
    root = make_repo(tmp_path)
    outside = write(tmp_path, "outside/secret.yaml", "not: [valid\n")
    link = root / f"sites/{SITE}/manifests/link.yaml"
    link.parent.mkdir(parents=True)
    os.symlink(outside, link)
    code, out, err = validate_cli(capsys, str(root))
    assert code == 2
    assert out == ""
    assert err == (f"reconciler: error: sites/{SITE}/manifests/link.yaml: symbolic links are "
                   "not allowed in a site's files\n")
    link.unlink()
    os.symlink(outside.parent, root / f"sites/{SITE}/manifests/linked")
    code, _, err = validate_cli(capsys, str(root))
    assert code == 2
    assert f"sites/{SITE}/manifests/linked: symbolic links are not allowed" in err
    assert "secret" not in err


def test_symlinked_crds_folder_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A crds/ folder that is a symbolic link stops validate with exit 2."""
    root = make_repo(tmp_path, crds=False)
    os.symlink(contract.sample_repo_dir() / "crds", root / "crds")
    code, _, err = validate_cli(capsys, str(root))
    assert code == 2
    assert "crds: symbolic links are not allowed" in err


def test_symlinked_sites_folder_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sites/ folder that is a symbolic link is a usage error (exit 2), like any other."""
    root = tmp_path / "repo"
    root.mkdir()
    os.symlink(contract.sample_repo_dir() / "sites", root / "sites")
    code, out, err = validate_cli(capsys, str(root))
    assert "sites: symbolic links are not allowed" in err
    assert out == ""
    assert code == 2


# --- output formats ------------------------------------------------------------------------


def broken_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with an error (wave) and a warning (intent-mismatch) in one file."""
    root = make_repo(tmp_path, crds=False)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "  annotations:\n", "  annotations:\n    reconciler.dev/wave: '50%'\n")
    rel = manifest(root, "cm.yaml", text)
    other = manifest(root, "other.yaml",
                     CONFIGMAP.format(name="o", namespace="ran").replace("i-1", "i-0"))
    return root, rel, other


def test_text_output_has_one_line_per_finding_and_a_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Text output is `file:line:col: severity: object: path: message [rule]`, then counts."""
    root, rel, other = broken_repo(tmp_path)
    code, out, _ = validate_cli(capsys, str(root))
    assert code == 1
    lines = out.splitlines()
    assert lines[:3] == [
        f"{rel}:7:5: error: ConfigMap/ran/cm: $.metadata.annotations['reconciler.dev/wave']: "
        "wave must be an integer, not '50%' [wave]",
        f"{other}:7:5: warning: ConfigMap/ran/o: "
        "$.metadata.annotations['reconciler.dev/intent-id']: carries intent 'i-0', not 'i-1' "
        f"of site {SITE}: the site would drop it [intent-mismatch]",
        "",
    ]
    assert re.fullmatch(r"1 error\(s\), 1 warning\(s\): 1 site, 3 files, 3 documents checked "
                        r"in \d+\.\d\ds \(Kubernetes \d+\.\d+ schemas\)", lines[3])
    assert len(lines) == 4


def test_json_output_carries_every_field_and_the_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o json` holds each finding's fields and the error, warning, file, document counts."""
    root, rel, other = broken_repo(tmp_path)
    code, out, _ = validate_cli(capsys, str(root), "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert (data["errors"], data["warnings"], data["files"], data["documents"]) == (1, 1, 3, 3)
    assert data["sites"] == [SITE]
    assert data["findings"] == [
        {"severity": "error", "file": rel, "line": 7, "column": 5, "document": 0,
         "object": "ConfigMap/ran/cm", "path": "$.metadata.annotations['reconciler.dev/wave']",
         "message": "wave must be an integer, not '50%'", "rule": "wave"},
        {"severity": "warning", "file": other, "line": 7, "column": 5, "document": 0,
         "object": "ConfigMap/ran/o",
         "path": "$.metadata.annotations['reconciler.dev/intent-id']",
         "message": f"carries intent 'i-0', not 'i-1' of site {SITE}: the site would drop it",
         "rule": "intent-mismatch"},
    ]


def test_github_output_escapes_properties_and_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o github` writes workflow commands with `%`, `:` and `,` escaped in properties and
    `%` in the message."""
    root = make_repo(tmp_path, crds=False)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "  annotations:\n", "  annotations:\n    reconciler.dev/wave: '50%'\n")
    manifest(root, "a,b:c%.yaml", text)
    code, out, _ = validate_cli(capsys, str(root), "-o", "github")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        f"::error file=sites/{SITE}/manifests/a%2Cb%3Ac%25.yaml,line=7,col=5,"
        "title=reconciler validate%3A wave::ConfigMap/ran/cm: "
        "$.metadata.annotations['reconciler.dev/wave']: wave must be an integer, not '50%25'")
    assert lines[1].startswith("1 error(s), 0 warning(s): 1 site, 2 files, 2 documents")
    assert len(lines) == 2


def newline_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """Two findings with a line break: a YAML problem, and an object name holding one."""
    root = make_repo(tmp_path)
    bad = manifest(root, "bad.yaml", b"a: \xff\n")
    crafted = manifest(root, "cm.yaml", CONFIGMAP.format(name='"x\\ny"', namespace="ran")
                       + "  port: 1\n")
    return root, bad, crafted


def test_github_output_keeps_a_finding_with_a_line_break_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o github` keeps each annotation one line: a line break in a name is shown escaped
    (`\\n`, by documents.printable()), and a byte that is not UTF-8 is named, not quoted."""
    root, bad, crafted = newline_repo(tmp_path)
    findings = check(root).findings
    assert "\n" not in findings[0].message and findings[1].object == "ConfigMap/ran/x\\ny"
    code, out, _ = validate_cli(capsys, str(root), "-o", "github")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"::error file={bad},line=1,title=reconciler validate%3A yaml::"
                               "invalid YAML: byte 3 is not UTF-8")
    assert lines[1].startswith(f"::error file={crafted},line=4,col=3,title=reconciler "
                               "validate%3A dns-1123-subdomain::ConfigMap/ran/x\\ny: ")


def test_text_output_keeps_a_finding_with_a_line_break_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Text output keeps one line per finding even when a message or name holds a newline."""
    root, _, _ = newline_repo(tmp_path)
    _, out, _ = validate_cli(capsys, str(root))
    assert len(out.splitlines()) == 4  # two findings, a blank line, the summary


# --- --site, and the parallel path ---------------------------------------------------------


def test_site_option_restricts_to_the_named_sites(tmp_path: Path) -> None:
    """`--site` reports only the named sites (repeatable), and always checks crds/."""
    root = make_repo(tmp_path, sites=(SITE, "edge-b", "edge-c"))
    for site in (SITE, "edge-b", "edge-c"):
        manifest(root, "cm.yaml", CONFIGMAP.format(name="cm", namespace="ran")
                 .replace("i-1", "i-0"), site=site)
    write(root, "crds/broken.yaml", "a: [\n")
    only_b = check(root, sites=("edge-b",))
    assert only_b.sites == ("edge-b",)
    assert [(f.location.file, f.rule) for f in only_b.findings] == [
        ("crds/broken.yaml", "yaml"),
        ("sites/edge-b/manifests/cm.yaml", "intent-mismatch"),
    ]
    two = check(root, sites=("edge-c", SITE, "edge-c"))
    assert two.sites == ("edge-c", SITE)
    assert [f.location.file for f in two.findings] == [
        "crds/broken.yaml", f"sites/{SITE}/manifests/cm.yaml", "sites/edge-c/manifests/cm.yaml"]


def test_site_option_on_the_command_line_is_repeatable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate --site a --site b` checks both sites and no other."""
    root = make_repo(tmp_path, sites=(SITE, "edge-b", "edge-c"), crds=False)
    code, out, _ = validate_cli(capsys, str(root), "--site", SITE, "--site", "edge-b",
                                "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["sites"], data["files"]) == ([SITE, "edge-b"], 2)


def test_parallel_check_gives_the_same_findings_as_serial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking files in worker processes finds exactly what the serial check finds."""
    root = make_repo(tmp_path, sites=(SITE, "edge-b"), crds=False)
    write(root, "crds/gadgets.yaml", GADGET_CRD)
    for site in (SITE, "edge-b"):
        manifest(root, "a.yaml", CONFIGMAP.format(name="cm", namespace="ran") + "  n: 1\n",
                 site=site)
        manifest(root, "b.yaml", gadget("  size: big\n  colour: red\n"), site=site)
        manifest(root, "c.yaml", CONFIGMAP.format(name="cm", namespace="ran")
                 .replace("i-1", "i-0"), site=site)
        manifest(root, "d.yaml", "a: [\n", site=site)
    monkeypatch.setattr(validate, "PARALLEL_FROM", 1)
    pools: list[int] = []

    class Pool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(kwargs["max_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)
    serial = validate.run(options=validate.Options(root=root, jobs=1))
    parallel = validate.run(options=validate.Options(root=root, jobs=2))
    assert pools == [2]  # only the jobs=2 run used worker processes
    assert len(serial.findings) == 10  # c.yaml, on another id, is no duplicate of a.yaml
    assert parallel.findings == serial.findings
    assert (parallel.files, parallel.documents) == (serial.files, serial.documents) == (11, 9)


# --- agreement with sync, and odd input (found in review) ----------------------------------


def test_shipped_schema_applies_even_where_a_crd_defines_the_kind(tmp_path: Path) -> None:
    """schemas/ is checked as sync checks it, also for a kind a CRD in the repository
    defines: a name the shipped schema refuses is an error, not a silent pass."""
    root = make_repo(tmp_path)
    text = (contract.sample_repo_dir() / "sites/edge-sfo-01/manifests/20-networkfunctions.yaml"
            ).read_text().split("---")[0].replace("sfo-baseline-1", INTENT_ID)
    rel = manifest(root, "nf.yaml", text.replace("name: sfo-upf\n", "name: sfo_upf\n"))
    finding = only(check(root))
    assert where(finding) == (rel, 6, 3, "NetworkFunction/sfo-ran/sfo_upf", "$.metadata.name",
                              "dns-1123-subdomain", "error")


def test_same_object_on_two_intent_ids_is_no_duplicate(tmp_path: Path) -> None:
    """The next intent's copy of an object, staged beside the current one, is not a
    duplicate (sync applies one and holds the other): only the stale id is reported."""
    root = make_repo(tmp_path)
    manifest(root, "cm.yaml", CONFIGMAP.format(name="cm", namespace="ran"))
    rel = manifest(root, "cm-next.yaml", CONFIGMAP.format(name="cm", namespace="ran")
                   .replace("i-1", "i-2"))
    finding = only(check(root))
    assert where(finding)[:1] + where(finding)[5:] == (rel, "intent-mismatch", "warning")


def test_embedded_resource_may_carry_its_own_object_fields(tmp_path: Path) -> None:
    """A field marked x-kubernetes-embedded-resource holds an object: its apiVersion, kind
    and metadata are allowed though the schema does not list them."""
    root = make_repo(tmp_path)
    crd = GADGET_CRD.replace("                size: {type: integer}\n", (
        "                size: {type: integer}\n"
        "                template:\n"
        "                  type: object\n"
        "                  x-kubernetes-embedded-resource: true\n"
        "                  properties:\n"
        "                    spec: {type: object}\n"))
    write(root, "crds/gadgets.yaml", crd)
    manifest(root, "g.yaml", gadget("  template:\n    apiVersion: v1\n    kind: Pod\n"
                                    "    metadata: {name: p}\n    spec: {}\n"))
    assert check(root).findings == ()
    manifest(root, "g.yaml", gadget("  template:\n    colour: red\n"))
    finding = only(check(root))
    assert where(finding)[4:] == ("$.spec.template.colour", "crd-schema", "error")


@pytest.mark.parametrize("broken", [
    "                size: {$ref: '#/definitions/size'}\n",
    "                size: {type: 5}\n",
    "                size: {type: whole}\n",
    "                size: {type: string, pattern: '['}\n",
])
def test_crd_schema_this_tool_cannot_use_is_a_warning_not_a_crash(
        tmp_path: Path, broken: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A CRD schema jsonschema cannot apply leaves its objects unchecked, with a warning
    at each object; nothing escapes as a traceback."""
    root = make_repo(tmp_path)
    write(root, "crds/gadgets.yaml",
          GADGET_CRD.replace("                size: {type: integer}\n", broken))
    rel = manifest(root, "g.yaml", gadget("  size: 3\n"))
    _, out, err = validate_cli(capsys, str(root))
    assert "Traceback" not in out + err
    gadget_findings = [f for f in check(root).findings if f.location.file == rel]
    assert [where(f)[4:] for f in gadget_findings] == [("$", "crd-schema", "warning")]
    assert "not checked" in gadget_findings[0].message


@pytest.mark.parametrize("kind", ["Pod\u0000", "A" * 300, "../configmap"])
def test_odd_kind_is_an_unknown_kind_not_a_crash(tmp_path: Path, kind: str) -> None:
    """A kind no schema file can be named after is refused as no kind's name (sync
    refuses it too, before any write: names.kind_problem())."""
    root = make_repo(tmp_path)
    text = CONFIGMAP.format(name="cm", namespace="ran").replace(
        "kind: ConfigMap", f"kind: {json.dumps(kind)}")
    manifest(root, "odd.yaml", text)
    finding = only(check(root))
    assert where(finding)[4:] == ("$.kind", "kind", "error")


def test_secret_values_never_appear_in_findings(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A Secret breaking its schema is reported at the field without its value, in every
    output format."""
    root = make_repo(tmp_path)
    rel = manifest(root, "s.yaml", CONFIGMAP.format(name="s", namespace="ran").replace(
        "kind: ConfigMap", "kind: Secret").replace("data:\n  key: value\n",
                                                    "stringData:\n  pin: 987654\n"))
    finding = only(check(root))
    assert where(finding) == (rel, 9, 3, "Secret/ran/s", "$.stringData.pin", "kube-schema",
                              "error")
    for output in ("text", "json", "github"):
        _, out, err = validate_cli(capsys, str(root), "-o", output)
        assert "stringData.pin" in out
        assert "987654" not in out + err
