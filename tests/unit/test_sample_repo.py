"""The telco sample repository agrees with the schemas, the CRDs and the intent protocol."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from reconciler import contract
from reconciler.repo import documents, schemas

SAMPLE = contract.sample_repo_dir()
SCHEMAS = contract.schemas_dir()
SITES = sorted(p for p in (SAMPLE / "sites").iterdir() if p.is_dir())
SITE_NAMES = [p.name for p in SITES]
CRD_FILES = sorted((SAMPLE / "crds").glob("*.yaml"))
INTENT_ID = "reconciler.dev/intent-id"
WAVE = "reconciler.dev/wave"
KIND_SCHEMAS = {
    "WorkloadCluster": "workloadcluster.schema.json",
    "NetworkFunction": "networkfunction.schema.json",
}
# JSON Schema keywords whose values the CRDs and the JSON schemas must share.
SHARED_KEYWORDS = ("type", "enum", "pattern", "minimum", "maximum", "minLength")


def load_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document in a file, read with the safe loader."""
    yaml = YAML(typ="safe", pure=True)
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.load_all(stream) if doc is not None]


def load_schema(name: str) -> dict[str, Any]:
    """One JSON Schema from reconciler/data/schemas/, checked to be a valid draft 2020-12 schema."""
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def load_intent(site: Path) -> dict[str, Any]:
    """The single Intent document of a site."""
    (intent,) = load_documents(site / "intent.yaml")
    return intent


def site_manifests(site: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every object under a site's manifests/, with the file it came from."""
    files = sorted((site / "manifests").rglob("*.yaml")) + sorted(
        (site / "manifests").rglob("*.yml")
    )
    return [(path, doc) for path in files for doc in load_documents(path)]


def by_site(site: str) -> Path:
    """The folder of a sample site by name."""
    return SAMPLE / "sites" / site


def crd_spec_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the spec of a CRD kind, from crds/."""
    for path in CRD_FILES:
        for crd in load_documents(path):
            if crd["spec"]["names"]["kind"] == kind:
                (version,) = crd["spec"]["versions"]
                return version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    raise AssertionError(f"no CRD for kind {kind}")


def compare_schemas(crd: dict[str, Any], js: dict[str, Any], where: str) -> list[str]:
    """Differences between a CRD schema node and a JSON Schema node, recursively."""
    problems = []
    for keyword in SHARED_KEYWORDS:
        if crd.get(keyword) != js.get(keyword):
            problems.append(f"{where}: {keyword} {crd.get(keyword)!r} != {js.get(keyword)!r}")
    if set(crd.get("required", [])) != set(js.get("required", [])):
        problems.append(f"{where}: required {crd.get('required')} != {js.get('required')}")
    crd_props, js_props = crd.get("properties", {}), js.get("properties", {})
    if set(crd_props) != set(js_props):
        problems.append(f"{where}: properties {sorted(crd_props)} != {sorted(js_props)}")
    for name in set(crd_props) & set(js_props):
        problems += compare_schemas(crd_props[name], js_props[name], f"{where}.{name}")
    if "items" in crd or "items" in js:
        problems += compare_schemas(crd.get("items", {}), js.get("items", {}), f"{where}[]")
    return problems


def test_there_are_two_sites() -> None:
    """The sample repository holds the two edge sites the demo and the tests use."""
    assert SITE_NAMES == ["edge-nyc-02", "edge-sfo-01"]


def test_every_yaml_file_parses_with_the_safe_loader() -> None:
    """Every YAML file in the sample repository parses with ruamel.yaml's safe loader."""
    files = sorted(SAMPLE.rglob("*.yaml"))
    assert files
    for path in files:
        docs = load_documents(path)
        assert docs, f"{path} holds no document"
        assert all(isinstance(doc, dict) for doc in docs), f"{path} holds a non-mapping"


@pytest.mark.parametrize("site", SITE_NAMES)
def test_intent_validates_against_the_schema(site: str) -> None:
    """Each site's intent.yaml is valid under intent.schema.json and names its own site."""
    intent = load_intent(by_site(site))
    jsonschema.Draft202012Validator(load_schema("intent.schema.json")).validate(intent)
    assert intent["metadata"]["name"] == site


@pytest.mark.parametrize("site", SITE_NAMES)
def test_sample_kinds_validate_against_their_schemas(site: str) -> None:
    """Each WorkloadCluster and NetworkFunction manifest is valid under its kind's schema."""
    checked = set()
    for path, obj in site_manifests(by_site(site)):
        if obj["kind"] in KIND_SCHEMAS:
            schema = load_schema(KIND_SCHEMAS[obj["kind"]])
            errors = list(jsonschema.Draft202012Validator(schema).iter_errors(obj))
            assert not errors, f"{path}: {[e.message for e in errors]}"
            checked.add(obj["kind"])
    assert checked == set(KIND_SCHEMAS)


@pytest.mark.parametrize("site", SITE_NAMES)
def test_every_manifest_carries_the_site_intent_id(site: str) -> None:
    """Every manifest of a site is stamped with the id of that site's intent."""
    intent_id = load_intent(by_site(site))["spec"]["id"]
    manifests = site_manifests(by_site(site))
    assert manifests
    for path, obj in manifests:
        annotations = obj["metadata"].get("annotations") or {}
        assert annotations.get(INTENT_ID) == intent_id, f"{path}: {obj['metadata']['name']}"


@pytest.mark.parametrize("site", SITE_NAMES)
def test_network_functions_reference_a_cluster_of_the_same_site(site: str) -> None:
    """Each NetworkFunction's clusterRef names a WorkloadCluster of its site and namespace."""
    objects = [obj for _, obj in site_manifests(by_site(site))]
    clusters = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "WorkloadCluster"
    }
    functions = [o for o in objects if o["kind"] == "NetworkFunction"]
    assert {f["spec"]["type"] for f in functions} == {"UPF", "SMF"}
    for nf in functions:
        assert (nf["metadata"]["namespace"], nf["spec"]["clusterRef"]) in clusters


@pytest.mark.parametrize("site", SITE_NAMES)
def test_waves_put_the_cluster_before_its_functions(site: str) -> None:
    """The WorkloadCluster's wave comes before the NetworkFunctions' wave, as strings of ints."""
    waves: dict[str, set[int]] = {}
    for _, obj in site_manifests(by_site(site)):
        wave = (obj["metadata"].get("annotations") or {}).get(WAVE, "0")
        assert isinstance(wave, str), f"{obj['metadata']['name']}: wave must be quoted"
        waves.setdefault(obj["kind"], set()).add(int(wave))
    assert max(waves["WorkloadCluster"]) < min(waves["NetworkFunction"])


@pytest.mark.parametrize("site", SITE_NAMES)
def test_namespaced_objects_share_the_site_namespace(site: str) -> None:
    """All namespaced objects of a site live in the namespace the site itself declares."""
    objects = [obj for _, obj in site_manifests(by_site(site))]
    (namespace,) = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


def test_no_crd_lives_under_sites() -> None:
    """CRDs live in crds/ only, never among a site's manifests."""
    for site in SITES:
        for path, obj in site_manifests(site):
            assert obj["kind"] != "CustomResourceDefinition", path


def test_crds_agree_with_the_json_schemas() -> None:
    """The CRDs' spec schemas and the JSON schemas share properties, required fields and enums."""
    for kind, name in KIND_SCHEMAS.items():
        js_spec = load_schema(name)["properties"]["spec"]
        assert compare_schemas(crd_spec_schema(kind), js_spec, f"{kind}.spec") == []


def test_crds_are_served_namespaced_with_status() -> None:
    """Each CRD serves and stores telco.example.com/v1alpha1, namespaced, with status."""
    kinds = set()
    for path in CRD_FILES:
        (crd,) = load_documents(path)
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        assert path.name == f"{crd['metadata']['name']}.yaml"
        assert spec["group"] == "telco.example.com"
        assert spec["scope"] == "Namespaced"
        assert "telco" in spec["names"]["categories"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        kinds.add(spec["names"]["kind"])
    assert kinds == set(KIND_SCHEMAS)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda spec: spec.update(id="bad id!"), ["spec", "id"]),
        (lambda spec: spec.update(id="x" * 64), ["spec", "id"]),
        (lambda spec: spec.pop("id"), ["spec"]),
        (lambda spec: spec.update(sequence=-1), ["spec", "sequence"]),
        (lambda spec: spec["rollout"].update(healthTimeout="ten minutes"), ["spec", "rollout"]),
        (lambda spec: spec.update(unknown=True), ["spec"]),
    ],
    ids=["bad-id", "long-id", "missing-id", "negative-sequence", "bad-timeout", "extra-field"],
)
def test_broken_intent_is_rejected(change: Any, path: list[str]) -> None:
    """A sample intent with a bad or missing id, or another broken field, fails the schema."""
    intent = copy.deepcopy(load_intent(SITES[0]))
    change(intent["spec"])
    # The project's validator: it checks the `duration` format with durations.parse().
    errors = schemas.schema_errors(intent, schema=schemas.INTENT_SCHEMA,
                                   location=documents.Location(file="intent.yaml", document=0))
    assert errors
    assert any(list(e.keys)[: len(path)] == path for e in errors)


def test_intent_of_another_kind_is_rejected() -> None:
    """An intent with the wrong apiVersion or kind fails the schema."""
    validator = jsonschema.Draft202012Validator(load_schema("intent.schema.json"))
    for field, value in (("apiVersion", "v1"), ("kind", "ConfigMap")):
        intent = copy.deepcopy(load_intent(SITES[0]))
        intent[field] = value
        assert not validator.is_valid(intent)
