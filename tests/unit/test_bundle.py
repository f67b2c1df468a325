"""Reading one site's intent and manifests safely, and checking the manifests' form."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import git
import pytest

from reconciler import contract, errors
from reconciler.repo import bundle, documents, schemas
from reconciler.repo import tree as trees
from tests import gitrepo

INTENT = """\
apiVersion: reconciler.dev/v1alpha1
kind: Intent
metadata:
  name: {site}
spec:
{spec}
"""
SPEC = """\
  id: intent-1
  sequence: 3
  description: Roll out the UPF
  rollout:
    healthTimeout: 10m
    prune: false
"""

# No leading `---`, comment and blank line before the first document, an empty document.
APP = """\
# objects of the app

apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  namespace: app
  annotations:
    reconciler.dev/intent-id: intent-1
    reconciler.dev/wave: "20"
---
---
apiVersion: v1
kind: Secret
metadata:
  name: two
"""
# A comment, then a leading `---`; a `.yml` file.
NET = """\
# network objects
---
apiVersion: v1
kind: Service
metadata:
  name: three
---
apiVersion: v1
kind: Service
metadata:
  name: four
"""
DEEP = """\
apiVersion: v1
kind: Namespace
metadata:
  name: five
"""
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
"""

MakeTree = Callable[[dict[str, str]], trees.Tree]


def intent(site: str = "edge-a", spec: str = SPEC) -> str:
    """The text of an intent file for `site` with the given (indented) spec lines."""
    return INTENT.format(site=site, spec=spec.rstrip("\n"))


def site_files() -> dict[str, str]:
    """A valid site `edge-a` with only its intent file."""
    return {"sites/edge-a/intent.yaml": intent()}


@pytest.fixture(params=["dir", "git"])
def make_tree(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeTree]:
    """The same files as a DirTree and as a GitTree over a real commit."""
    counter = itertools.count()
    repos: list[git.Repo] = []

    def make(files: dict[str, str]) -> trees.Tree:
        root = tmp_path / f"tree{next(counter)}"
        if request.param == "dir":
            for path, text in files.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text, encoding="utf-8")
            return trees.DirTree(root)
        remote = gitrepo.GitRemote(root)
        for path, text in files.items():
            remote.write(path, text)
        sha = remote.commit("fixture")
        repo = git.Repo(remote.work)
        repos.append(repo)
        return trees.GitTree(repo.commit(sha))

    yield make
    for repo in repos:
        repo.close()


def load(tree: trees.Tree, site: str = "edge-a", **limits: int) -> documents.Bundle:
    return bundle.load(tree=tree, site=site, limits=bundle.Limits(**limits))


# --- a good site ------------------------------------------------------------------------


def test_site_manifests_load_in_file_order_with_their_locations(make_tree: MakeTree) -> None:
    """Manifests come sorted by file, each with its 0-based document and 1-based line."""
    tree = make_tree({
        "sites/edge-a/manifests/nested/deeper/30-deep.yaml": DEEP,
        "sites/edge-a/manifests/20-net.yml": NET,
        "sites/edge-a/manifests/10-app.yaml": APP,
        "sites/edge-a/intent.yaml": intent(),
    })
    loaded = load(tree)
    assert [(m.location.file, m.location.document, m.location.line, m.name)
            for m in loaded.manifests] == [
        ("sites/edge-a/manifests/10-app.yaml", 0, 3, "one"),
        ("sites/edge-a/manifests/10-app.yaml", 2, 12, "two"),
        ("sites/edge-a/manifests/20-net.yml", 0, 2, "three"),
        ("sites/edge-a/manifests/20-net.yml", 1, 7, "four"),
        ("sites/edge-a/manifests/nested/deeper/30-deep.yaml", 0, 1, "five"),
    ]
    assert loaded.site == "edge-a"
    assert loaded.manifests[0].body["metadata"]["namespace"] == "app"


def test_non_yaml_files_and_other_sites_are_not_read(make_tree: MakeTree) -> None:
    """Only `.yaml`/`.yml` below the site's manifests/ are manifests; the rest is ignored."""
    tree = make_tree(site_files() | {
        "sites/edge-a/manifests/a.yaml": DEEP,
        "sites/edge-a/manifests/README.md": "not: [yaml",
        "sites/edge-a/manifests/values.json": "{",
        "sites/edge-a/manifests/a.yaml.bak": "not: [yaml",
        "sites/edge-a/notes.yaml": DEEP.replace("five", "beside-manifests"),
        "sites/edge-b/intent.yaml": intent("edge-b"),
        "sites/edge-b/manifests/b.yaml": DEEP.replace("five", "other-site"),
    })
    assert [m.name for m in load(tree).manifests] == ["five"]


def test_crds_are_read_from_the_repository_root(make_tree: MakeTree) -> None:
    """`crds/*.yaml` load as the bundle's CRDs, apart from the site's manifests."""
    tree = make_tree(site_files() | {
        "crds/widgets.yaml": CRD,
        "sites/edge-a/manifests/a.yaml": DEEP,
    })
    loaded = load(tree)
    assert [(c.kind, c.name, c.location.file) for c in loaded.crds] == [
        ("CustomResourceDefinition", "widgets.example.com", "crds/widgets.yaml"),
    ]
    assert [m.name for m in loaded.manifests] == ["five"]


def test_site_without_manifests_or_crds_loads_empty(make_tree: MakeTree) -> None:
    """A site with only its intent has no manifests and no CRDs."""
    loaded = load(make_tree(site_files()))
    assert loaded.manifests == ()
    assert loaded.crds == ()


def test_a_missing_or_replaced_manifests_folder_is_said(make_tree: MakeTree) -> None:
    """No manifests/ (deleted, or replaced by a file) is recorded on the bundle, for the
    pipeline's prune guard to refuse; a folder is recorded as nothing missing."""
    assert load(make_tree(site_files())).manifests_missing == "is missing"
    as_file = {**site_files(), "sites/edge-a/manifests": "a file, not a folder\n"}
    assert load(make_tree(as_file)).manifests_missing == "is not a folder"
    with_folder = {**site_files(), "sites/edge-a/manifests/app.yaml": APP}
    assert load(make_tree(with_folder)).manifests_missing == ""


def test_allow_empty_is_read_from_the_intent(make_tree: MakeTree) -> None:
    allowed = intent(spec=SPEC.replace("prune: false", "prune: allowEmpty"))
    loaded = load(make_tree({"sites/edge-a/intent.yaml": allowed}))
    assert loaded.intent.prune and loaded.intent.allow_empty
    assert not load(make_tree(site_files())).intent.allow_empty


def test_intent_fields_are_read(make_tree: MakeTree) -> None:
    """id, sequence, description, healthTimeout (as seconds) and prune come from the spec."""
    loaded = load(make_tree(site_files()))
    assert loaded.intent == documents.Intent(
        site="edge-a",
        id="intent-1",
        sequence=3,
        description="Roll out the UPF",
        health_timeout=600.0,
        prune=False,
        location=documents.Location(file="sites/edge-a/intent.yaml", document=0, line=1),
    )


def test_health_timeout_in_minutes_is_parsed_to_seconds(make_tree: MakeTree) -> None:
    """`healthTimeout: 5m` is 300 seconds."""
    spec = "  id: intent-1\n  rollout:\n    healthTimeout: 5m\n"
    loaded = load(make_tree({"sites/edge-a/intent.yaml": intent(spec=spec)}))
    assert loaded.intent.health_timeout == 300.0


@pytest.mark.parametrize(("written", "seconds"),
                         [("1m30s", 90.0), ("1h", 3600.0), ("90", 90.0), ("500ms", 0.5)])
def test_health_timeout_is_read_as_kubernetes_writes_durations(
        make_tree: MakeTree, written: str, seconds: float) -> None:
    """`healthTimeout` takes what the CLI's flags take (durations.parse): `1m30s`, `1h`."""
    spec = f"  id: intent-1\n  rollout:\n    healthTimeout: {written}\n"
    loaded = load(make_tree({"sites/edge-a/intent.yaml": intent(spec=spec)}))
    assert loaded.intent.health_timeout == seconds


def test_rollout_defaults_apply_when_absent(make_tree: MakeTree) -> None:
    """Without a rollout block the timeout is 600 s and prune is on; no sequence is None."""
    loaded = load(make_tree({"sites/edge-a/intent.yaml": intent(spec="  id: intent-1\n")}))
    assert loaded.intent.health_timeout == bundle.DEFAULT_HEALTH_TIMEOUT == 600.0
    assert loaded.intent.prune is True
    assert loaded.intent.sequence is None
    assert loaded.intent.description == ""


# --- a missing or unusable site ---------------------------------------------------------


def test_missing_site_is_refused_listing_the_known_sites(make_tree: MakeTree) -> None:
    """Asking for a site that is not in the repository names the sites that are."""
    tree = make_tree(site_files() | {"sites/edge-b/intent.yaml": intent("edge-b")})
    with pytest.raises(errors.BundleError) as caught:
        load(tree, site="edge-z")
    assert str(caught.value) == (
        "sites/edge-z/: no such site in the repository (sites: edge-a, edge-b)"
    )


def test_missing_site_in_a_repository_without_sites_says_none(make_tree: MakeTree) -> None:
    """With no sites at all the error says so rather than listing nothing."""
    with pytest.raises(errors.BundleError, match=r"\(sites: none\)$"):
        load(make_tree({"README.md": "hello"}))


def test_invalid_site_name_is_a_usage_error(make_tree: MakeTree) -> None:
    """A site name that is not a DNS-1123 name is refused before anything is read."""
    with pytest.raises(errors.UsageError, match=r"invalid site name '\.\./etc'"):
        load(make_tree(site_files()), site="../etc")


def test_site_without_intent_is_refused(make_tree: MakeTree) -> None:
    """A site folder without intent.yaml is a BundleError naming the missing file."""
    tree = make_tree({"sites/edge-a/manifests/a.yaml": DEEP})
    with pytest.raises(errors.BundleError,
                       match=r"^sites/edge-a/intent\.yaml: missing; every site needs"):
        load(tree)


def test_intent_with_two_documents_is_refused(make_tree: MakeTree) -> None:
    """The intent file must hold exactly one document."""
    tree = make_tree({"sites/edge-a/intent.yaml": intent() + "---\n" + intent()})
    with pytest.raises(errors.BundleError,
                       match=r"^sites/edge-a/intent\.yaml: expected exactly one YAML document, "
                             r"found 2$"):
        load(tree)


def test_empty_intent_is_refused(make_tree: MakeTree) -> None:
    """An intent file with only comments holds no document and is refused."""
    tree = make_tree({"sites/edge-a/intent.yaml": "# nothing yet\n"})
    with pytest.raises(errors.BundleError, match="expected exactly one YAML document, found 0"):
        load(tree)


# --- YAML errors ------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(make_tree: MakeTree) -> None:
    """A manifest that is not YAML is refused with `file:line:column` and the problem."""
    tree = make_tree(site_files() | {
        "sites/edge-a/manifests/bad.yaml": "apiVersion: v1\nkind: ConfigMap\n  name: x\n",
    })
    with pytest.raises(errors.BundleError) as caught:
        load(tree)
    # libyaml (ruamel.yaml.clib) and the pure-Python parser word the problem differently.
    assert re.fullmatch(r"sites/edge-a/manifests/bad\.yaml:3:7: invalid YAML: mapping values "
                        r"are not allowed (here|in this context)", str(caught.value))


def test_yaml_syntax_error_in_the_intent_names_the_intent(make_tree: MakeTree) -> None:
    """A broken intent file is reported at its own line and column."""
    tree = make_tree({"sites/edge-a/intent.yaml": "kind: Intent\nspec: [unclosed\n"})
    with pytest.raises(errors.BundleError, match=r"^sites/edge-a/intent\.yaml:3:1: invalid YAML"):
        load(tree)


def test_duplicate_keys_are_refused(make_tree: MakeTree) -> None:
    """A mapping with the same key twice is refused at the duplicate, not silently merged."""
    tree = make_tree(site_files() | {
        "sites/edge-a/manifests/dup.yaml": "apiVersion: v1\nkind: A\nkind: B\n",
    })
    with pytest.raises(errors.BundleError,
                       match=r'^sites/edge-a/manifests/dup\.yaml:3:1: invalid YAML: '
                             r'found duplicate key "kind"'):
        load(tree)


def test_python_tags_are_refused() -> None:
    """The safe loader refuses tags that would construct Python objects."""
    with pytest.raises(errors.BundleError, match=r"^m\.yaml:1:4: invalid YAML: could not "
                                                 r"determine a constructor"):
        bundle.parse_documents(b"a: !!python/object/apply:os.system [true]\n", file="m.yaml")


def test_undecodable_bytes_are_refused() -> None:
    """Bytes that are not UTF-8 are a BundleError naming the file, the line and the rule."""
    with pytest.raises(errors.BundleError, match=r"^m\.yaml:1: invalid YAML: byte 3 is not "
                                                 r"UTF-8; manifests must be UTF-8 \(rule: "
                                                 r"encoding\)$"):
        bundle.parse_documents(b"a: \xff\xfe\xfa\n", file="m.yaml")


def test_nested_sequence_as_a_mapping_key_is_a_bundle_error() -> None:
    """A key YAML cannot hash is a BundleError naming the file, not a crash."""
    with pytest.raises(errors.BundleError, match=r"^m\.yaml"):
        bundle.parse_documents(b"[[1]]: x\n", file="m.yaml")


# --- the intent's schema and site -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ("  id: bad id!\n", "$.spec.id", "'bad id!' does not match"),
        ("  description: no id\n", "$.spec", "'id' is a required property"),
        ("  id: intent-1\n  colour: blue\n", "$.spec.colour",
         "field 'colour' is not declared in the schema"),
        ("  id: intent-1\n  rollout:\n    healthTimeout: 5 minutes\n",
         "$.spec.rollout.healthTimeout", "invalid duration '5 minutes': expected e.g. 30s"),
        ("  id: intent-1\n  rollout:\n    healthTimeout: 1.5\n",
         "$.spec.rollout.healthTimeout", "1.5 is not of type 'string', 'integer'"),
        ("  id: intent-1\n  rollout:\n    healthTimeout: -5\n",
         "$.spec.rollout.healthTimeout", "invalid duration -5: must not be negative"),
        ("  id: intent-1\n  sequence: -1\n", "$.spec.sequence", "-1 is less than the minimum"),
        ("  id: intent-1\n  rollout:\n    prune: maybe\n", "$.spec.rollout.prune",
         "'maybe' is not one of [True, False, 'allowEmpty']"),
    ],
)
def test_intent_breaking_its_schema_names_file_and_json_path(
    make_tree: MakeTree, spec: str, path: str, message: str
) -> None:
    """A schema violation is a ValidationError naming the intent file and the field's path."""
    tree = make_tree({"sites/edge-a/intent.yaml": intent(spec=spec)})
    with pytest.raises(errors.ValidationError) as caught:
        load(tree)
    assert str(caught.value).startswith(f"sites/edge-a/intent.yaml: invalid intent: {path}: ")
    assert message in str(caught.value)
    (finding,) = caught.value.findings
    assert finding.startswith(f"sites/edge-a/intent.yaml:1 (document 1): {path}: ")
    assert finding.endswith("[schema]")


def test_intent_of_the_wrong_kind_is_refused(make_tree: MakeTree) -> None:
    """A document that is not `kind: Intent` fails the schema at `$.kind`."""
    text = intent().replace("kind: Intent", "kind: ConfigMap")
    with pytest.raises(errors.ValidationError, match=r"invalid intent: \$\.kind: 'Intent' was "):
        load(make_tree({"sites/edge-a/intent.yaml": text}))


def test_intent_naming_another_site_is_refused(make_tree: MakeTree) -> None:
    """An intent whose metadata.name is another site's is refused at `$.metadata.name`."""
    tree = make_tree({"sites/edge-a/intent.yaml": intent(site="edge-b")})
    with pytest.raises(errors.ValidationError) as caught:
        load(tree)
    assert str(caught.value) == (
        "sites/edge-a/intent.yaml: invalid intent: $.metadata.name: names site 'edge-b' but "
        "lives in the folder of site 'edge-a'"
    )
    assert caught.value.findings[0].endswith("[intent-site]")


# --- manifests that are not objects -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")],
)
def test_manifest_that_is_not_a_mapping_is_refused_at_its_location(
    make_tree: MakeTree, text: str, kind: str
) -> None:
    """A document that is a list or a scalar is refused, naming file, line and document."""
    tree = make_tree(site_files() | {
        "sites/edge-a/manifests/m.yaml": DEEP + "---\n" + text,
    })
    with pytest.raises(errors.BundleError) as caught:
        load(tree)
    assert str(caught.value) == (
        f"sites/edge-a/manifests/m.yaml:5 (document 2): a manifest must be a mapping "
        f"(an object), not {kind}"
    )


def test_crd_that_is_not_a_mapping_is_refused(make_tree: MakeTree) -> None:
    """The same rule holds for documents under crds/."""
    tree = make_tree(site_files() | {"crds/x.yaml": "- a\n"})
    with pytest.raises(errors.BundleError, match=r"^crds/x\.yaml:1 \(document 1\): a manifest"):
        load(tree)


# --- limits -----------------------------------------------------------------------------


def test_manifest_over_the_file_size_limit_is_refused(make_tree: MakeTree) -> None:
    """A manifest file larger than max_file_bytes is refused, naming it, its size, the limit
    and the flag that raises it."""
    intent_size = len(intent().encode())
    big = DEEP + "# " + "x" * 500 + "\n"
    tree = make_tree(site_files() | {"sites/edge-a/manifests/big.yaml": big})
    with pytest.raises(errors.BundleError,
                       match=rf"^sites/edge-a/manifests/big\.yaml: file is {len(big)} bytes, "
                             rf"over the limit of {intent_size} bytes; raise it with "
                             r"--max-file-size$"):
        load(tree, max_file_bytes=intent_size)


def test_intent_over_the_file_size_limit_is_refused(make_tree: MakeTree) -> None:
    """The intent file is held to the same size limit."""
    tree = make_tree(site_files())
    with pytest.raises(errors.BundleError, match=r"^sites/edge-a/intent\.yaml: file is"):
        load(tree, max_file_bytes=10)


def test_file_with_too_many_documents_is_refused(make_tree: MakeTree) -> None:
    """More documents in one file than max_documents is refused, with the count."""
    tree = make_tree(site_files() | {
        "sites/edge-a/manifests/many.yaml": "---\n".join([DEEP] * 3),
    })
    assert len(load(tree, max_documents=3).manifests) == 3
    with pytest.raises(errors.BundleError,
                       match=r"^sites/edge-a/manifests/many\.yaml: 3 documents, over the limit "
                             r"of 2$"):
        load(tree, max_documents=2)


def test_site_with_too_many_files_is_refused(make_tree: MakeTree) -> None:
    """More manifest files than max_files is refused, naming the folder."""
    tree = make_tree(site_files() | {
        f"sites/edge-a/manifests/{n}.yaml": DEEP.replace("five", f"n{n}") for n in range(3)
    })
    assert len(load(tree, max_files=3).manifests) == 3
    with pytest.raises(errors.BundleError,
                       match=r"^sites/edge-a/manifests/: 3 files, over the limit of 2$"):
        load(tree, max_files=2)


BILLION_LAUGHS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_alias_bomb_is_refused_by_the_node_limit(make_tree: MakeTree) -> None:
    """Nested anchors that expand to ~10^9 nodes are refused under the default limits."""
    tree = make_tree(site_files() | {"sites/edge-a/manifests/lol.yaml": BILLION_LAUGHS})
    with pytest.raises(errors.BundleError) as caught:
        bundle.load(tree=tree, site="edge-a")
    assert str(caught.value) == (
        "sites/edge-a/manifests/lol.yaml:1 (document 1): document has more than 100000 nodes "
        "once aliases are expanded (limit against alias bombs)"
    )


def test_node_limit_counts_aliased_nodes_once_per_use() -> None:
    """A node reached through two aliases counts twice: 1 + 2 * (list + 3 items) = 9 nodes."""
    data = b"a: &x [1, 2, 3]\nb: *x\n"
    (_, doc), = bundle.parse_documents(data, file="m.yaml", limits=bundle.Limits(max_nodes=9))
    assert doc == {"a": [1, 2, 3], "b": [1, 2, 3]}
    with pytest.raises(errors.BundleError, match="more than 8 nodes once aliases are expanded"):
        bundle.parse_documents(data, file="m.yaml", limits=bundle.Limits(max_nodes=8))


# --- document locations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a: 1\n---\nb: 2\n", [(0, 1), (1, 2)], id="no-leading-marker"),
        pytest.param("---\na: 1\n---\nb: 2\n", [(0, 1), (1, 3)], id="leading-marker"),
        pytest.param("# c\n\n  # indented\na: 1\n---\nb: 2\n", [(0, 4), (1, 5)],
                     id="comments-before-first"),
        pytest.param("# c\n---\na: 1\n", [(0, 2)], id="comment-before-marker"),
        pytest.param("---\n---\na: 1\n---\n---\nb: 2\n---\n", [(1, 2), (3, 5)],
                     id="empty-documents-keep-their-index"),
        pytest.param("a: 1\n---\n# nothing\n---\nb: 2\n", [(0, 1), (2, 4)],
                     id="comment-only-document"),
        pytest.param("--- {a: 1}\n--- {b: 2}\n", [(0, 1), (1, 2)], id="content-on-marker-line"),
        pytest.param("%YAML 1.2\n---\na: 1\n", [(0, 2)], id="directive"),
        pytest.param("a: |\n  ---\n  x\n---\nb: 2\n", [(0, 1), (1, 4)],
                     id="indented-dashes-in-block-scalar"),
        pytest.param("", [], id="empty-file"),
        pytest.param("# only a comment\n", [], id="comment-only-file"),
    ],
)
def test_each_document_gets_its_index_and_start_line(
    text: str, expected: list[tuple[int, int]]
) -> None:
    """Locations carry the 0-based index among all documents and the 1-based start line."""
    found = bundle.parse_documents(text.encode(), file="m.yaml")
    assert [(loc.document, loc.line) for loc, _ in found] == expected
    assert all(loc.file == "m.yaml" for loc, _ in found)


def test_documents_are_returned_with_their_content() -> None:
    """parse_documents returns the parsed value of each non-empty document."""
    found = bundle.parse_documents(b"a: 1\n---\n---\n- x\n", file="m.yaml")
    assert [doc for _, doc in found] == [{"a": 1}, ["x"]]


def test_document_lines_are_right_in_a_file_with_crlf_line_endings() -> None:
    """A file written with Windows line endings gets the same lines as with `\\n`."""
    data = b"# c\r\n\r\napiVersion: v1\r\n---\r\nkind: X\r\n"
    found = bundle.parse_documents(data, file="m.yaml")
    assert [(loc.document, loc.line) for loc, _ in found] == [(0, 3), (1, 4)]


def test_document_after_an_end_marker_gets_its_own_line() -> None:
    """A document after `...` starts at its `---` line; the first one at its content."""
    data = b"a: 1\n...\n---\nb: 2\n---\nc: 3\n"
    found = bundle.parse_documents(data, file="m.yaml")
    assert [(loc.document, loc.line) for loc, _ in found] == [(0, 1), (1, 3), (2, 5)]


def test_bare_document_after_an_end_marker_is_refused_at_its_line() -> None:
    """libyaml, the parser sync and validate use, needs `---` after `...`: named at 3:1."""
    with pytest.raises(errors.YAMLSyntaxError) as caught:
        bundle.parse_documents(b"a: 1\n...\nb: 2\n", file="m.yaml")
    assert (caught.value.file, caught.value.line, caught.value.column) == ("m.yaml", 3, 1)
    assert "document start" in caught.value.problem


def test_location_reads_as_file_line_and_1_based_document() -> None:
    """str(Location) is `file:line (document n)`, with n counted from 1 for people."""
    assert str(documents.Location(file="m.yaml", document=0, line=3)) == "m.yaml:3 (document 1)"
    assert str(documents.Location(file="m.yaml", document=2)) == "m.yaml (document 3)"
    assert documents.Location(file="m.yaml", document=1, line=7).as_dict() == {
        "file": "m.yaml", "document": 1, "line": 7,
    }


# --- Manifest ---------------------------------------------------------------------------

HERE = documents.Location(file="sites/edge-a/manifests/m.yaml", document=0, line=1)


def manifest(body: dict[str, object], location: documents.Location = HERE) -> documents.Manifest:
    return documents.Manifest(location=location, body=body)


def test_manifest_describes_itself_as_kind_namespace_name() -> None:
    """describe() is `Kind/namespace/name`, or `Kind/name` without a namespace."""
    namespaced = manifest({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}})
    cluster_wide = manifest({"kind": "Namespace", "metadata": {"name": "ns"}})
    assert namespaced.describe() == "ConfigMap/ns/x"
    assert cluster_wide.describe() == "Namespace/ns"
    assert cluster_wide.namespace is None


def test_manifest_reads_its_annotations() -> None:
    """intent_id and wave come from the reconciler.dev annotations."""
    m = manifest({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "annotations": {
            "reconciler.dev/intent-id": "intent-7", "reconciler.dev/wave": "-5",
        }},
    })
    assert (m.api_version, m.kind, m.name) == ("v1", "ConfigMap", "x")
    assert m.intent_id == "intent-7"
    assert m.wave == -5


def test_manifest_without_annotations_has_wave_0_and_no_intent() -> None:
    """No annotations means wave 0 and intent_id None (not the string 'None')."""
    m = manifest({"kind": "ConfigMap", "metadata": {"name": "x"}})
    assert m.wave == 0
    assert m.intent_id is None
    assert m.annotations == {}


def test_manifest_with_malformed_metadata_reads_as_empty() -> None:
    """Metadata or annotations that are not mappings read as empty, for validate to report."""
    no_meta = manifest({"kind": "ConfigMap", "metadata": "oops"})
    assert (no_meta.metadata, no_meta.name, no_meta.describe()) == ({}, "", "ConfigMap/")
    bad_annotations = manifest({"kind": "X", "metadata": {"name": "x", "annotations": ["a"]}})
    assert bad_annotations.annotations == {}
    assert bad_annotations.intent_id is None


def test_manifest_with_non_integer_wave_reads_as_wave_0() -> None:
    """A wave that is not an integer reads as 0 (validate reports it)."""
    m = manifest({"kind": "X", "metadata": {"name": "x",
                                           "annotations": {"reconciler.dev/wave": "soon"}}})
    assert m.wave == 0


# --- schemas.check_manifests -----------------------------------------------------------

GOOD = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "x",
        "namespace": "ns",
        "labels": {"tier": "core"},
        "annotations": {"reconciler.dev/intent-id": "intent-1", "reconciler.dev/wave": "10"},
    },
}


def with_metadata(**changes: object) -> dict[str, object]:
    """GOOD with metadata keys changed (None removes a key)."""
    metadata = {**GOOD["metadata"], **changes}  # type: ignore[dict-item]
    return {**GOOD, "metadata": {k: v for k, v in metadata.items() if v is not None}}


def with_annotation(key: str, value: object) -> dict[str, object]:
    return with_metadata(annotations={**GOOD["metadata"]["annotations"], key: value})  # type: ignore[index]


def findings_of(body: dict[str, object]) -> list[tuple[str, str, str]]:
    return [(f.path, f.rule, f.message) for f in schemas.check_manifests([manifest(body)])]


def test_well_formed_manifest_has_no_findings() -> None:
    """A manifest with kind, apiVersion, name and well-formed annotations passes."""
    assert schemas.check_manifests([manifest(GOOD)]) == []


@pytest.mark.parametrize("key", ["kind", "apiVersion"])
def test_missing_kind_or_api_version_is_reported_at_its_path(key: str) -> None:
    """A missing or empty kind/apiVersion is a required-field finding at `$.<key>`."""
    expected = [(f"$.{key}", "required-field", f"{key} is required and must be a string")]
    assert findings_of({k: v for k, v in GOOD.items() if k != key}) == expected
    assert findings_of({**GOOD, key: ""}) == expected
    assert findings_of({**GOOD, key: 1}) == expected


def test_missing_metadata_is_reported_once() -> None:
    """Without a metadata mapping, only `$.metadata` is reported."""
    assert findings_of({"apiVersion": "v1", "kind": "ConfigMap"}) == [
        ("$.metadata", "required-field", "metadata is required and must be a mapping"),
    ]


def test_missing_name_is_reported_at_metadata_name() -> None:
    """A manifest without metadata.name is a required-field finding at `$.metadata.name`."""
    assert findings_of(with_metadata(name=None)) == [
        ("$.metadata.name", "required-field", "metadata.name is required and must be a string"),
    ]


def test_non_string_annotation_value_is_reported_at_its_key() -> None:
    """An annotation value that YAML read as a number must be quoted."""
    assert findings_of(with_annotation("reconciler.dev/wave", 5)) == [
        ("$.metadata.annotations['reconciler.dev/wave']", "metadata",
         "value must be a string, not int (quote it)"),
    ]


def test_non_string_label_value_is_reported_at_its_key() -> None:
    """A label value that YAML read as a boolean must be quoted."""
    assert findings_of(with_metadata(labels={"enabled": True})) == [
        ("$.metadata.labels.enabled", "metadata",
         "value must be a string, not bool (quote it)"),
    ]


def test_annotations_that_are_not_a_mapping_are_reported() -> None:
    """Annotations given as a list are reported at `$.metadata.annotations`."""
    assert findings_of(with_metadata(annotations=["a", "b"])) == [
        ("$.metadata.annotations", "metadata", "annotations must be a mapping of strings"),
    ]


@pytest.mark.parametrize("wave", ["soon", "1.5", " 5", "", "-"])
def test_wave_that_is_not_an_integer_is_reported(wave: str) -> None:
    """A wave annotation that is not an integer string is a `wave` finding."""
    assert findings_of(with_annotation("reconciler.dev/wave", wave)) == [
        ("$.metadata.annotations['reconciler.dev/wave']", "wave",
         f"wave must be an integer, not {wave!r}"),
    ]


@pytest.mark.parametrize("wave", ["0", "20", "-5"])
def test_integer_waves_pass(wave: str) -> None:
    """Zero, positive and negative integer waves are fine."""
    assert findings_of(with_annotation("reconciler.dev/wave", wave)) == []


@pytest.mark.parametrize("wave", ["--5", "²"], ids=["double-minus", "superscript-two"])
def test_wave_that_manifest_cannot_read_is_reported(wave: str) -> None:
    """Every wave that Manifest.wave cannot read as an integer is a `wave` finding."""
    body = with_annotation("reconciler.dev/wave", wave)
    assert manifest(body).wave == 0  # what the rollout would use
    assert [rule for _, rule, _ in findings_of(body)] == ["wave"]


@pytest.mark.parametrize("intent_id", ["bad id!", "x" * 64, "a/b"])
def test_malformed_intent_id_is_reported(intent_id: str) -> None:
    """An intent-id annotation outside [A-Za-z0-9._-]{1,63} is an `intent-id` finding."""
    found = findings_of(with_annotation("reconciler.dev/intent-id", intent_id))
    assert [(path, rule) for path, rule, _ in found] == [
        ("$.metadata.annotations['reconciler.dev/intent-id']", "intent-id"),
    ]
    assert repr(intent_id) in found[0][2]


def test_findings_name_the_location_and_object() -> None:
    """Each finding carries the manifest's location and `Kind/ns/name`, and prints both."""
    other = documents.Location(file="sites/edge-a/manifests/n.yaml", document=2, line=9)
    good, bad = manifest(GOOD), manifest(with_annotation("reconciler.dev/wave", "x"), other)
    (finding,) = schemas.check_manifests([good, bad])
    assert finding.location == other
    assert finding.object == "ConfigMap/ns/x"
    assert str(finding) == (
        "sites/edge-a/manifests/n.yaml:9 (document 3) ConfigMap/ns/x: "
        "$.metadata.annotations['reconciler.dev/wave']: wave must be an integer, not 'x' [wave]"
    )


def test_known_kind_is_checked_against_its_schema() -> None:
    """A NetworkFunction without its spec breaks the shipped schema (rule `schema`)."""
    body = {"apiVersion": "telco.example.com/v1alpha1", "kind": "NetworkFunction",
            "metadata": {"name": "upf"}}
    assert findings_of(body) == [("$", "schema", "'spec' is a required property")]


PLAIN_CASES = {
    "scalars": b"s: text\ni: 42\nneg: -7\nhex: 0x1F\noct: 0o17\nf: 1.5\nexp: 1e3\ninf: .inf\n"
               b"t: true\nno: no\nnull1: null\nnull2: ~\nempty:\nquoted: '42'\nts: 2024-01-02\n"
               b"tsz: 2024-01-02T03:04:05Z\nver: 1.10\n",
    "tags": b"a: !!str 42\nb: !!int '7'\nc: !!float 1\nd: !!binary aGVsbG8=\ne: !!null ''\n",
    "nesting": b"a:\n  b:\n    - c: [1, {d: e}]\n    - - x\n      - y\n  f: {}\n  g: []\n",
    "keys": b"2: int key\n1.5: float key\ntrue: bool key\n~: null key\n",
    "multi": b"a: 1\n---\n- 2\n---\n'three'\n---\n",
    "merge": b"base: {x: 1}\nother:\n  <<: {x: 0, y: 2}\n  z: 3\n",
    "set": b"!!set {a, b}\n",
    "omap": b"!!omap [a: 1, b: 2]\n",
    "deep": b"a: " + b"[" * 300 + b"]" * 300 + b"\n",
}


def _typed(value: object) -> object:
    """A value with the type of every node made part of it, to compare exactly."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


@pytest.mark.parametrize("case", sorted(PLAIN_CASES))
def test_plain_builder_builds_what_ruamel_builds(case: str) -> None:
    """The direct builder for plain documents gives exactly the values and types of ruamel's
    own constructor, read with the same (kubectl's) scalar rules."""
    data = PLAIN_CASES[case]
    stock = list(bundle.safe_loader().load_all(data))
    ours = list(bundle.safe_loader(plain=True).load_all(data))
    assert _typed(ours) == _typed(stock)


def test_plain_builder_agrees_on_every_sample_manifest() -> None:
    """Every file of the sample repository reads the same with and without the builder."""
    files = sorted(contract.sample_repo_dir().rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        data = path.read_bytes()
        assert _typed(list(bundle.safe_loader(plain=True).load_all(data))) == _typed(
            list(bundle.safe_loader().load_all(data))), path


def test_plain_builder_leaves_duplicate_keys_to_ruamels_error() -> None:
    """A duplicate key is refused with ruamel's own error and position, not overwritten."""
    with pytest.raises(errors.YAMLSyntaxError) as caught:
        bundle.parse_documents(b"a: 1\nb: 2\na: 3\n", file="m.yaml")
    assert "duplicate key" in str(caught.value)
    assert (caught.value.line, caught.value.column) == (3, 1)
