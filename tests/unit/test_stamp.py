"""Stamping an intent id into manifests, and setting intent.yaml's fields, byte for byte."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

from reconciler import contract
from reconciler.manager import stamp

TESTDATA = Path(__file__).parent / "testdata" / "stamp"
KEY = contract.ANNOTATION_INTENT_ID
NEW = "upf-2-4"


def load_all(data: bytes) -> list[Any]:
    return list(ruamel_yaml.YAML(typ="safe").load_all(data))


def changed_lines(before: bytes, after: bytes) -> tuple[list[str], list[str]]:
    """The lines (with their line endings) that difflib sees removed and added."""
    old = before.decode("utf-8").splitlines(keepends=True)
    new = after.decode("utf-8").splitlines(keepends=True)
    removed: list[str] = []
    added: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            removed += old[i1:i2]
            added += new[j1:j2]
    return removed, added


def expected_data(data: bytes, intent_id: str) -> list[Any]:
    """The original documents with only the intent-id annotation set (empty ones kept)."""
    docs = copy.deepcopy(load_all(data))
    for doc in docs:
        if doc is None:
            continue
        if doc["metadata"].get("annotations") is None:
            doc["metadata"]["annotations"] = {}
        doc["metadata"]["annotations"][KEY] = intent_id
    return docs


def assert_stamped(text: str | bytes, *, removed: list[str], added: list[str],
                   intent_id: str = NEW) -> stamp.StampResult:
    """Stamp `text`; exactly `removed` and `added` lines differ and the data is as expected."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    result = stamp.stamp_file(data, file="m.yaml", intent_id=intent_id)
    assert changed_lines(data, result.data) == (removed, added)
    assert load_all(result.data) == expected_data(data, intent_id)
    return result


def refused(text: str, *, intent_id: str = NEW) -> str:
    with pytest.raises(stamp.StampError) as caught:
        stamp.stamp_file(text.encode("utf-8"), file="m.yaml", intent_id=intent_id)
    return str(caught.value)


# --- fidelity -----------------------------------------------------------------------------


def test_kitchen_sink_matches_its_golden_file() -> None:
    """A file of comments, anchors, flow maps, markers and odd indents stamps to its golden copy."""
    before = (TESTDATA / "kitchen-sink.yaml").read_bytes()
    result = stamp.stamp_file(before, file="kitchen-sink.yaml", intent_id=NEW)
    assert result.data == (TESTDATA / "kitchen-sink.stamped.yaml").read_bytes()
    assert [(d.document, d.action) for d in result.documents] == [
        (0, stamp.Action.REPLACED), (1, stamp.Action.CREATED), (2, stamp.Action.CREATED),
        (3, stamp.Action.REPLACED), (5, stamp.Action.UNCHANGED)]
    assert load_all(result.data) == expected_data(before, NEW)
    removed, added = changed_lines(before, result.data)
    assert len(removed) == 3 and all(KEY in line or "Secret" in line for line in removed)
    assert added == [
        f"    {KEY}: upf-2-4   # the old id, with a comment\n",
        "    annotations:\n",
        f"        {KEY}: upf-2-4\n",
        "{apiVersion: v1, kind: Secret, metadata: {name: sfo-creds, namespace: sfo-ran, "
        f"annotations: {{{KEY}: upf-2-4}}}}, type: Opaque}}\n",
        f"metadata: {{name: sfo-ran, annotations: {{{KEY}: 'upf-2-4', a: b}}}}\n",
    ]


@pytest.mark.parametrize("path", sorted(contract.sample_repo_dir().glob("sites/*/manifests/*")),
                         ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_sample_manifests_change_only_their_id_lines(path: Path) -> None:
    """Every manifest of the sample repository changes in its intent-id lines and nowhere else."""
    data = path.read_bytes()
    result = stamp.stamp_file(data, file=path.name, intent_id=NEW)
    removed, added = changed_lines(data, result.data)
    assert removed and len(removed) == len(added) == len(result.documents)
    for old, new in zip(removed, added, strict=True):
        assert KEY in old and new == old.replace(old.split(": ")[1].split()[0], NEW, 1)
    assert load_all(result.data) == expected_data(data, NEW)


def test_existing_id_is_replaced_keeping_comments() -> None:
    """Full-line, end-of-line and in-annotations comments stay; only the id's text changes."""
    text = (
        "# top\n"
        "kind: A  # eol\n"
        "metadata:\n"
        "  # before name\n"
        "  name: x\n"
        "  annotations:  # the annotations\n"
        "    # the id below\n"
        f"    {KEY}: old-id  # keep me\n"
        "    # after the id\n"
    )
    result = assert_stamped(text, removed=[f"    {KEY}: old-id  # keep me\n"],
                            added=[f"    {KEY}: upf-2-4  # keep me\n"])
    assert result.documents[0].action is stamp.Action.REPLACED
    assert result.documents[0].previous == "old-id"


def test_quote_style_of_the_old_value_is_kept() -> None:
    """A single- or double-quoted id stays quoted the same way, quoted keys included."""
    text = (f"kind: A\nmetadata:\n  name: x\n  annotations:\n    '{KEY}': 'old'\n---\n"
            f"kind: B\nmetadata:\n  name: y\n  annotations:\n    \"{KEY}\": \"old\"\n")
    assert_stamped(text, removed=[f"    '{KEY}': 'old'\n", f"    \"{KEY}\": \"old\"\n"],
                   added=[f"    '{KEY}': 'upf-2-4'\n", f"    \"{KEY}\": \"upf-2-4\"\n"])


def test_annotation_is_added_first_in_block_annotations() -> None:
    """A missing id goes first in the annotations, at their indentation, before their comments."""
    text = ("kind: A\nmetadata:\n   name: x\n   annotations:\n      # wave comment\n"
            "      reconciler.dev/wave: \"0\"\nspec: {}\n")
    result = assert_stamped(text, removed=[], added=[f"      {KEY}: upf-2-4\n"])
    assert result.data.decode().splitlines()[4] == f"      {KEY}: upf-2-4"
    assert result.documents[0].action is stamp.Action.ADDED


def test_annotations_are_created_after_the_last_metadata_entry() -> None:
    """Without annotations, `annotations:` is added after metadata's last entry, its nested
    lines and end-of-line comment, before the comments and blank lines that follow."""
    text = ("kind: A\nmetadata:\n    name: x\n    labels:\n        a: b  # c\n\n"
            "    # trailing comment\nspec:\n- 1\n- 2\n")
    result = assert_stamped(text, removed=[],
                            added=["    annotations:\n", f"        {KEY}: upf-2-4\n"])
    assert result.data.decode().splitlines()[5:7] == ["    annotations:", f"        {KEY}: upf-2-4"]
    assert result.documents[0].action is stamp.Action.CREATED


def test_metadata_ending_in_a_block_scalar_and_a_sequence() -> None:
    """The new annotations go after a trailing block scalar or list, not inside it."""
    text = ("kind: A\nmetadata:\n  name: x\n  finalizers:\n  - a\n  - b\n---\n"
            "kind: B\nmetadata:\n  name: y\n  labels:\n    note: |\n      line one\n\n"
            "      line three\n\n# after\n")
    assert_stamped(text, removed=[], added=["  annotations:\n", f"    {KEY}: upf-2-4\n"] * 2)


def test_null_annotations_are_filled() -> None:
    """`annotations:` with no value gets an indented entry; `annotations: ~` a flow mapping."""
    text = ("kind: A\nmetadata:\n  name: x\n  annotations:\nspec: 1\n---\n"
            "kind: B\nmetadata:\n  name: y\n  annotations: ~  # none\n")
    assert_stamped(text, removed=["  annotations: ~  # none\n"],
                   added=[f"    {KEY}: upf-2-4\n", f"  annotations: {{{KEY}: upf-2-4}}  # none\n"])


def test_flow_annotations_and_flow_metadata() -> None:
    """Flow mappings get the entry appended inside their braces; `{}` gets it alone."""
    text = ("kind: A\nmetadata: {name: x, annotations: {a: b}}  # c\n---\n"
            "kind: B\nmetadata: {name: y}\n---\n"
            "kind: C\nmetadata:\n  name: z\n  annotations: {}\n---\n"
            "kind: D\nmetadata: {\n  name: w,\n  annotations: {a: b,}\n}\n")
    assert_stamped(
        text,
        removed=["metadata: {name: x, annotations: {a: b}}  # c\n", "metadata: {name: y}\n",
                 "  annotations: {}\n", "  annotations: {a: b,}\n"],
        added=[f"metadata: {{name: x, annotations: {{a: b, {KEY}: upf-2-4}}}}  # c\n",
               f"metadata: {{name: y, annotations: {{{KEY}: upf-2-4}}}}\n",
               f"  annotations: {{{KEY}: upf-2-4}}\n",
               f"  annotations: {{a: b, {KEY}: upf-2-4,}}\n"])


def test_documents_markers_and_directives_are_kept() -> None:
    """`%YAML`, `---`, `...`, comments before `---` and empty documents stay; each document is
    stamped, the empty ones skipped."""
    text = ("# leading comment\n%YAML 1.1\n---\nkind: A\nmetadata:\n  name: x\n...\n"
            "# between\n---\n---\n# only a comment\n--- \nkind: B\nmetadata:\n  name: y\n...\n")
    result = assert_stamped(text, removed=[], added=["  annotations:\n", f"    {KEY}: upf-2-4\n"]
                            * 2)
    assert [d.document for d in result.documents] == [0, 3]


def test_crlf_file_stays_crlf() -> None:
    """A CRLF file gets CRLF stamped lines and keeps every other CRLF."""
    text = (f"kind: A\r\nmetadata:\r\n  name: x\r\n  annotations:\r\n    {KEY}: old\r\n---\r\n"
            "kind: B\r\nmetadata:\r\n  name: y\r\n---\r\nkind: C\r\nmetadata:\r\n  name: z\r\n"
            "  annotations:\r\n    a: b\r\n")
    result = assert_stamped(text, removed=[f"    {KEY}: old\r\n"],
                            added=[f"    {KEY}: upf-2-4\r\n", "  annotations:\r\n",
                                   f"    {KEY}: upf-2-4\r\n", f"    {KEY}: upf-2-4\r\n"])
    assert b"\n" not in result.data.replace(b"\r\n", b"")


def test_trailing_whitespace_tabs_and_a_missing_final_newline() -> None:
    """Trailing spaces and tabs stay, and a file without a final newline still ends without one."""
    text = "kind: A   \nmetadata:  \n  name: x # tab\t\n  labels: {a: b}"
    result = assert_stamped(text, removed=["  labels: {a: b}"],
                            added=["  labels: {a: b}\n", "  annotations:\n", f"    {KEY}: upf-2-4"])
    assert result.data.startswith(text.encode())
    assert not result.data.endswith(b"\n")


def test_byte_order_mark_is_kept() -> None:
    """A UTF-8 byte order mark at the start of the file survives the stamp."""
    data = "\ufeffkind: A\nmetadata:\n  name: x\n  annotations: {a: ü}\n".encode()
    result = stamp.stamp_file(data, file="m.yaml", intent_id=NEW)
    assert result.data == data.replace("a: ü}".encode(), f"a: ü, {KEY}: upf-2-4}}".encode())


def test_anchors_and_aliases_elsewhere_are_untouched() -> None:
    """Anchors, aliases and merge keys outside metadata stay as written."""
    text = ("kind: A\nbase: &base {replicas: 2}\nmetadata:\n  name: x\n  labels: &l {a: b}\n"
            "spec:\n  <<: *base\n  selector: *l\n")
    assert_stamped(text, removed=[], added=["  annotations:\n", f"    {KEY}: upf-2-4\n"])


def test_merge_key_in_annotations_is_overridden_by_an_own_entry() -> None:
    """Annotations merged in with `<<:` keep their other entries; the own id entry wins."""
    text = (f"common: &common\n  {KEY}: old\n  team: ran\nkind: A\nmetadata:\n  name: x\n"
            "  annotations:\n    <<: *common\n")
    assert_stamped(text, removed=[], added=[f"    {KEY}: upf-2-4\n"])


def test_alias_value_is_replaced_and_its_anchor_kept() -> None:
    """`intent-id: *x` becomes the new id; the anchored value and its other uses keep theirs."""
    text = (f"kind: A\nx-old: &old old-id\nmetadata:\n  name: x\n  labels: {{was: *old}}\n"
            f"  annotations:\n    {KEY}: *old\n")
    result = assert_stamped(text, removed=[f"    {KEY}: *old\n"],
                            added=[f"    {KEY}: upf-2-4\n"])
    assert result.documents[0].previous == "old-id"


def test_anchored_value_used_nowhere_else_keeps_its_anchor() -> None:
    """`intent-id: &a !!str old` keeps the anchor and the tag and gets the new text."""
    text = f"kind: A\nmetadata:\n  name: x\n  annotations:\n    {KEY}: &a !!str old\n"
    assert_stamped(text, removed=[f"    {KEY}: &a !!str old\n"],
                   added=[f"    {KEY}: &a !!str upf-2-4\n"])


def test_already_stamped_file_is_unchanged() -> None:
    """A file whose documents all carry the id comes back as the same bytes."""
    data = f"kind: A\nmetadata:\n  name: x\n  annotations: {{{KEY}: upf-2-4}}\n".encode()
    result = stamp.stamp_file(data, file="m.yaml", intent_id=NEW)
    assert result.data == data
    assert not result.changed
    assert result.documents[0].action is stamp.Action.UNCHANGED


@pytest.mark.parametrize("intent_id", ["1.0", "true", "0x1", "1e3", "yes", "2024-01-01", "007"])
def test_ids_that_would_not_read_as_strings_are_quoted(intent_id: str) -> None:
    """An id YAML would read as a number, bool or date is written double-quoted."""
    text = f"kind: A\nmetadata:\n  name: x\n  annotations:\n    {KEY}: old\n"
    assert_stamped(text, intent_id=intent_id, removed=[f"    {KEY}: old\n"],
                   added=[f"    {KEY}: \"{intent_id}\"\n"])


def test_plain_value_that_reads_as_another_type_is_restamped_quoted() -> None:
    """`intent-id: 1.0` (a float) does not count as carrying the id "1.0": it is quoted."""
    text = f"kind: A\nmetadata:\n  name: x\n  annotations:\n    {KEY}: 1.0\n"
    result = assert_stamped(text, intent_id="1.0", removed=[f"    {KEY}: 1.0\n"],
                            added=[f"    {KEY}: \"1.0\"\n"])
    assert result.documents[0].action is stamp.Action.REPLACED


# --- refused layouts ----------------------------------------------------------------------


def test_shared_annotations_anchor_is_refused() -> None:
    """Annotations anchored and reused elsewhere are refused, naming file, line and object."""
    message = refused("kind: A\nmetadata:\n  name: x\n  annotations: &a\n    k: v\n"
                      "spec:\n  template: {metadata: {annotations: *a}}\n")
    assert message.startswith("m.yaml:4 (document 1) A/x: metadata.annotations is anchored (&a)")
    assert "would change those uses too" in message


def test_annotations_alias_is_refused() -> None:
    """`annotations: *a` is refused: stamping it would stamp the anchored original too."""
    message = refused("common: &a {k: v}\nkind: A\nmetadata:\n  name: x\n  annotations: *a\n")
    assert "m.yaml:5 (document 1) A/x: metadata.annotations is an alias (*a)" in message


def test_metadata_alias_is_refused() -> None:
    """`metadata: *m` is refused naming the document and object."""
    message = refused("---\nkind: A\nmetadata: {name: a}\n---\nm: &m {name: x}\nkind: B\n"
                      "metadata: *m\n")
    assert "m.yaml:7 (document 2) B/x: metadata is an alias (*m)" in message


def test_annotations_from_a_merge_key_are_refused() -> None:
    """Annotations that come from `<<:` are refused: an own mapping would replace them."""
    message = refused("base: &b\n  annotations: {k: v}\nkind: A\nmetadata:\n  <<: *b\n"
                      "  name: x\n")
    assert "metadata.annotations comes from a merge key (<<)" in message
    assert message.startswith("m.yaml:5 (document 1) A/x")


def test_shared_id_value_is_refused() -> None:
    """An intent-id value anchored and reused elsewhere is refused."""
    message = refused(f"kind: A\nmetadata:\n  name: x\n  annotations:\n    {KEY}: &i old\n"
                      "  labels: {copy: *i}\n")
    assert f"the value of metadata.annotations.{KEY} is anchored (&i)" in message


@pytest.mark.parametrize(("text", "expected"), [
    ("- a\n- b\n", "m.yaml:1 (document 1): a manifest must be a mapping (an object), not list"),
    ("---\nkind: A\nmetadata: {name: a}\n---\njust text\n", "(document 2): a manifest must be"),
    ("kind: A\nspec: {}\n", "m.yaml:1 (document 1) A/?: has no metadata mapping"),
    ("kind: A\nmetadata: [1]\n", "A/?: has no metadata mapping"),
    ("kind: A\nmetadata:\n  name: x\n  annotations: [a]\n", "annotations is not a mapping"),
    (f"kind: A\nmetadata:\n  name: x\n  annotations:\n    {KEY}: [a]\n", "is a list, not a value"),
    ("kind: A\nmetadata: {name: [\n", "m.yaml:3:1: invalid YAML"),
    ("kind: A\nkind: B\nmetadata: {name: x}\n", "invalid YAML"),
])
def test_documents_that_cannot_be_stamped_are_refused(text: str, expected: str) -> None:
    """Non-mappings, missing metadata, wrong shapes and broken YAML fail with file and document."""
    assert expected in refused(text)


def test_invalid_id_and_non_utf8_are_refused() -> None:
    """An id outside the pattern, and a file that is not UTF-8, are refused."""
    with pytest.raises(stamp.StampError, match="invalid intent id"):
        stamp.stamp_file(b"kind: A\n", file="m.yaml", intent_id="has space")
    with pytest.raises(stamp.StampError, match=r"m\.yaml: not UTF-8"):
        stamp.stamp_file(b"kind: \xff\n", file="m.yaml", intent_id=NEW)


def test_empty_files_are_left_alone() -> None:
    """A file of comments and empty documents has nothing to stamp and stays as it is."""
    data = b"# nothing here yet\n---\n...\n"
    result = stamp.stamp_file(data, file="m.yaml", intent_id=NEW)
    assert result.data == data and result.documents == ()


# --- setting intent.yaml fields -------------------------------------------------------------


def test_sample_intent_fields_are_set_in_place() -> None:
    """id, sequence and description change on their own lines; comments stay."""
    path = contract.sample_repo_dir() / "sites" / "edge-sfo-01" / "intent.yaml"
    data = path.read_bytes()
    after = stamp.set_values(data, file="intent.yaml", values=[
        (("spec", "id"), "upf-2-4"), (("spec", "sequence"), 8),
        (("spec", "description"), "Upgrade the UPF to 2.4: phase #1")])
    removed, added = changed_lines(data, after)
    assert [line.split(":")[0] for line in removed] == ["  id", "  sequence", "  description"]
    assert added == [
        "  id: upf-2-4  # opaque fencing token, [A-Za-z0-9._-]{1,63}\n",
        "  sequence: 8  # monotonic: a lower or equal one is refused\n",
        '  description: "Upgrade the UPF to 2.4: phase #1"\n',
    ]
    spec = load_all(after)[0]["spec"]
    assert (spec["id"], spec["sequence"]) == ("upf-2-4", 8)


def test_missing_intent_fields_are_inserted_after_the_id() -> None:
    """A spec without sequence or description gets them right after `id`, in order."""
    data = b"kind: Intent\nspec:\n  id: a  # c\n  rollout:\n    prune: true\n"
    after = stamp.set_values(data, file="intent.yaml", values=[
        (("spec", "id"), "b"), (("spec", "sequence"), 1), (("spec", "description"), "d")])
    assert after == (b"kind: Intent\nspec:\n  id: b  # c\n  sequence: 1\n  description: d\n"
                     b"  rollout:\n    prune: true\n")


def test_flow_spec_fields_are_set() -> None:
    """A flow-style spec is edited inside its braces."""
    data = b"kind: Intent\nspec: {id: a, sequence: 3}\n"
    after = stamp.set_values(data, file="intent.yaml", values=[
        (("spec", "id"), "b"), (("spec", "sequence"), 4), (("spec", "description"), "x")])
    assert after == b"kind: Intent\nspec: {id: b, sequence: 4, description: x}\n"


def test_render_quotes_only_when_needed() -> None:
    """Plain when it reads back as the same string, else double-quoted or in the given style."""
    assert stamp.render("sfo-upf-2") == "sfo-upf-2"
    assert stamp.render("on") == '"on"'
    assert stamp.render("a: b") == '"a: b"'
    assert stamp.render("it's", style="'") == "'it''s'"
    assert stamp.render("x", style='"') == '"x"'
    assert stamp.render(7) == "7"


# --- what sync reads: kind List, YAML 1.1 scalars ---------------------------------------

# From the Kubernetes documentation's ResourceQuota page (concepts/policy/resource-quotas),
# as a List of two quotas; the annotations are ours.
QUOTA_LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ResourceQuota
  metadata:
    name: pods-high
    namespace: ran
  spec:
    hard:
      pods: "10"
- apiVersion: v1
  kind: ResourceQuota
  metadata:
    name: pods-medium  # keep this comment
    namespace: ran
    annotations:
      reconciler.dev/intent-id: old
  spec:
    hard:
      pods: "10"
"""


def test_each_item_of_a_list_is_stamped_and_nothing_else_changes() -> None:
    """A `kind: List` gets the id on every item (what sync fences), not on the List, and
    every other byte stays."""
    result = stamp.stamp_file(QUOTA_LIST.encode(), file="q.yaml", intent_id=NEW)
    removed, added = changed_lines(QUOTA_LIST.encode(), result.data)
    assert removed == ["      reconciler.dev/intent-id: old\n"]
    assert added == ["    annotations:\n", f"      reconciler.dev/intent-id: {NEW}\n",
                     f"      reconciler.dev/intent-id: {NEW}\n"]
    (doc,) = load_all(result.data)
    assert [i["metadata"]["annotations"][KEY] for i in doc["items"]] == [NEW, NEW]
    assert "annotations" not in doc.get("metadata", {})
    assert [(s.object, s.line, s.action) for s in result.documents] == [
        ("ResourceQuota/ran/pods-high", 4, stamp.Action.CREATED),
        ("ResourceQuota/ran/pods-medium", 12, stamp.Action.REPLACED)]


def test_a_list_inside_a_list_is_refused() -> None:
    """A List nested in a List is refused with where it is, not stamped half-way."""
    text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n"
    message = refused(text)
    assert "m.yaml:4" in message and "item 0 is a List inside a List" in message


def test_a_plain_equals_sign_reads_as_sync_reads_it() -> None:
    """A plain `=` (YAML 1.1's value tag, as in prometheus-operator's AlertmanagerConfig
    CRD) is a string to the sites, so the file is stamped, not refused as invalid YAML."""
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ops\ndata:\n"
            "  ops: [=, '!=']\n")
    result = stamp.stamp_file(text.encode(), file="m.yaml", intent_id=NEW)
    assert changed_lines(text.encode(), result.data) == (
        [], ["  annotations:\n", f"    {KEY}: {NEW}\n"])
