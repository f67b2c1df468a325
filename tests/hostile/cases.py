"""The hostile-input corpus (#12 item 5): one table of cases, each a commit on the sample site.

Each case says what to write on top of the sample repository (reconciler/data/sample-repo)
for site edge-sfo-01, after its intent is restamped to a new intent id (`@ID@` in a file is
that id): file contents as bytes, `Symlink`, `Submodule`, or `REMOVE`. `rule` is the words
of the rule the error must carry, `file` the file it must name (escaped as the error shows
it), and `secret` a value that must appear in no output. The runners are
tests/unit/test_hostile.py (bundle and checks, every case) and tests/e2e/test_hostile.py
(`reconciler sync` and `reconciler run` against a cluster). README.md lists every case.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from tests import gitrepo

SITE = "edge-sfo-01"
SITE_DIR = f"sites/{SITE}"
M = f"{SITE_DIR}/manifests"
INTENT = f"{SITE_DIR}/intent.yaml"
ID = "@ID@"  # replaced by the intent id of the hostile commit
SECRET = "hostile-s3cret-value-7f2c"  # must never be shown


@dataclasses.dataclass(frozen=True)
class Symlink:
    """A symbolic link committed at the path, pointing at `target`."""

    target: str


@dataclasses.dataclass(frozen=True)
class Submodule:
    """A submodule (a gitlink, mode 160000) committed at the path."""


REMOVE = object()  # the path is deleted

Content = bytes | Symlink | Submodule | object


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile commit and what its refusal must say."""

    name: str
    description: str
    files: Mapping[str, Content]
    rule: str  # words the error carries that name the rule
    file: str  # the file the error names
    secret: str | None = None  # a value no output may show
    # "bundle": refused by bundle.load() or schemas.check_bundle(); "pipeline": read, and
    # refused by the pipeline's prune guard before the fence (a missing manifests/);
    # "cluster": refused before the fence once the cluster's discovery is read.
    layer: str = "bundle"
    subject: str = ""  # the commit's subject line, when the case is about it


def meta(name: str = "hostile", *, namespace: str | None = "sfo-ran", extra: str = "",
         wave: str = "30") -> str:
    """A manifest's metadata block, carrying the hostile intent's id, in a late wave: wave 0
    would be applied first if the revision were not checked as a whole."""
    ns = f"  namespace: {namespace}\n" if namespace is not None else ""
    return (f"metadata:\n  name: {name}\n{ns}  annotations:\n"
            f"    reconciler.dev/intent-id: {ID}\n    reconciler.dev/wave: \"{wave}\"\n{extra}")


def config_map(name: str = "hostile", *, data: str = "  a: b\n", **kwargs: str) -> bytes:
    """A ConfigMap of the site with the given (hostile) name or data."""
    return (f"apiVersion: v1\nkind: ConfigMap\n{meta(name, **kwargs)}data:\n{data}").encode()


def secret(data: str) -> bytes:
    """A Secret of the site with `data` as its stringData block."""
    return f"apiVersion: v1\nkind: Secret\n{meta('hostile-secret')}stringData:\n{data}".encode()


def nested(depth: int) -> str:
    """A block mapping `depth` levels deep, two spaces per level."""
    return "".join(f"{'  ' * (level + 1)}k{level}:\n" for level in range(depth)) + \
        f"{'  ' * (depth + 1)}leaf\n"


def intent(**fields: str) -> bytes:
    """The site's intent, with `fields` of spec replaced by hostile text."""
    spec = {"id": ID, "sequence": "2", "description": "hostile", **fields}
    body = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    return (f"apiVersion: reconciler.dev/v1alpha1\nkind: Intent\nmetadata:\n  name: {SITE}\n"
            f"spec:\n{body}  rollout:\n    prune: true\n").encode()


def _laughs() -> bytes:
    """Nine levels of nine aliases: 9**9 strings once expanded, 700 bytes written."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        name, below = chr(97 + level), chr(96 + level)
        lines.append(f"{name}: &{name} [{', '.join([f'*{below}'] * 9)}]")
    return ("\n".join(lines) + "\n").encode()


BILLION_LAUGHS = _laughs()
BRACKETS = b"[" * 29_000 + b"]" * 29_000  # 58 KB: the C parser's stack overflows
F = f"{M}/40-hostile.yaml"  # where most cases put their file
DEPTH = "nests deeper than 200 levels (rule: max-depth"
NAME_SUB = "must be a DNS-1123 subdomain"
FILE_LIMIT = "over the limit of 8388608 bytes (8Mi); raise it with --max-file-size"
NOT_JSON = "which JSON cannot carry to the API server (rule: json-values)"
YAML_VALUE = "a value its type cannot hold"
SYMLINK = "symbolic links are not allowed in a site's files"
REQUIRED = "[required-field]"

CASES: tuple[Case, ...] = (
    # Bombs, depth and size.
    Case("bracket-bomb", "58 KB of nested brackets, 29,000 levels, that overflowed the C "
         "parser's stack and killed the process.", {F: BRACKETS}, DEPTH, F),
    Case("brace-bomb", "20,000 nested flow mappings.",
         {F: b"a: " + b"{k: " * 20_000 + b"v" + b"}" * 20_000 + b"\n"}, DEPTH, F),
    Case("quoted-bracket-bomb", "30,000 levels whose closing brackets hide in quotes "
         "(`[ \"]\", [ \"]\", ...`), against a depth count that trusts quotes.",
         {F: b"a: " + b'[ "]", ' * 30_000 + b"x" + b"]" * 30_000 + b"\n"}, DEPTH, F),
    Case("explicit-key-bomb", "30,000 nested explicit keys (`? ? ? ...`).",
         {F: b"? " * 30_000 + b"x\n"}, DEPTH, F),
    Case("dash-bomb", "29,000 compact block sequences on one line (`- - - ...`).",
         {F: b"- " * 29_000 + b"x\n"}, DEPTH, F),
    Case("depth-600-block", "A ConfigMap nesting 600 block mappings (a traceback "
         "mid-rollout before).", {F: config_map(data=nested(600))}, DEPTH, F),
    Case("depth-600-flow", "A ConfigMap value nesting 600 flow sequences.",
         {F: config_map(data="  a: " + "[" * 600 + "]" * 600 + "\n")}, DEPTH, F),
    Case("depth-intent", "An intent nesting 600 flow sequences.",
         {INTENT: intent(description="[" * 600 + "]" * 600)}, DEPTH, INTENT),
    Case("billion-laughs", "Nine levels of nine aliases (CVE-2019-11253).",
         {F: BILLION_LAUGHS}, "limit against alias bombs", F),
    Case("billion-laughs-intent", "An alias bomb as the intent's description.",
         {INTENT: BILLION_LAUGHS + intent(description="*i")},
         "limit against alias bombs", INTENT),
    Case("huge-file", "A 50 MB manifest (CVE-2022-31016).",
         {F: b"a: " + b"x" * 50_000_000 + b"\n"}, FILE_LIMIT, F),
    Case("overlong-line", "One 9 MB line.", {F: b"# " + b"y" * 9_000_000 + b"\n"},
         FILE_LIMIT, F),
    Case("huge-intent", "A 9 MB intent file.",
         {INTENT: intent() + b"# " + b"z" * 9_000_000 + b"\n"}, FILE_LIMIT, INTENT),
    Case("site-over-size", "Nine manifests of 7.5 MB: each under the file limit, 67 MB "
         "together.", {f"{M}/big-{index}.yaml": b"# " + b"w" * 7_500_000 + b"\n"
                       for index in range(9)}, "per site; raise it with --max-site-size", M),
    Case("many-documents", "1,001 documents in one file.",
         {F: b"---\na: 1\n" * 1001}, "over the limit of 1000", F),
    Case("many-files", "5,001 manifest files in the site.",
         {f"{M}/many/{index:04}.yaml": b"a: 1\n" for index in range(5001)},
         "files, over the limit of 5000", M),
    Case("huge-annotation", "A 300 KB annotation value.",
         {F: config_map(extra="    big: " + "a" * 300_000 + "\n")},
         "[annotations-size]", F),
    # Encodings.
    Case("utf-16", "A manifest in UTF-16 with its byte order mark.",
         {F: config_map().decode().encode("utf-16")}, "(rule: encoding)", F),
    Case("utf-32", "A manifest in UTF-32.", {F: config_map().decode().encode("utf-32")},
         "(rule: encoding)", F),
    Case("invalid-utf-8", "A byte that is not UTF-8 in a value.",
         {F: config_map(data="  a: b@\n").replace(b"b@", b"b\xff")}, "is not UTF-8", F),
    Case("nul-byte", "A NUL byte in a value.", {F: config_map(data="  a: b\x00c\n")},
         "control characters are not allowed", F),
    Case("raw-escape", "A raw ESC byte (an ANSI colour) in a plain value.",
         {F: config_map(data="  a: \x1b[31mred\n")}, "control characters are not allowed",
         F),
    Case("bom-in-name", "A byte order mark inside an object name.",
         {F: config_map("\ufeffsfo-x")}, NAME_SUB, F),
    # Tags and values.
    Case("python-object", "`!!python/object/apply:os.system`.",
         {F: config_map(data="  a: !!python/object/apply:os.system [id]\n")},
         "could not determine a constructor for the tag", F),
    Case("python-name", "`!!python/name:os.system`.",
         {F: config_map(data="  a: !!python/name:os.system ''\n")},
         "could not determine a constructor for the tag", F),
    Case("unknown-tag", "A CloudFormation-style `!Ref` tag.",
         {F: config_map(data="  a: !Ref other\n")},
         "could not determine a constructor for the tag", F),
    Case("binary", "`!!binary` bytes in a ConfigMap's data.",
         {F: config_map(data="  a: !!binary aGVsbG8=\n")}, NOT_JSON, F),
    Case("set", "A `!!set`.", {F: config_map(data="  a: !!set {x, y}\n")}, NOT_JSON, F),
    Case("omap", "An `!!omap`.", {F: config_map(data="  a: !!omap [x: 1]\n")}, NOT_JSON, F),
    Case("timestamp", "An explicit `!!timestamp` that is valid (a datetime, not JSON).",
         {F: config_map(data="  a: !!timestamp 2024-01-02\n")}, NOT_JSON, F),
    Case("bad-date", "`!!timestamp 2024-13-45` (a traceback before).",
         {F: config_map(data="  a: !!timestamp 2024-13-45\n")}, YAML_VALUE, F),
    Case("bad-bool", "`!!bool \"maybe\"` (a traceback before).",
         {F: config_map(data="  a: !!bool \"maybe\"\n")}, YAML_VALUE, F),
    Case("bad-float", "`!!float` of a word, in a Secret: the value is not shown.",
         {F: secret(f"  a: !!float {SECRET}\n")}, YAML_VALUE, F, secret=SECRET),
    Case("int-5000-digits", "An integer of 5,000 digits (a traceback before).",
         {F: config_map(data="  a: " + "9" * 5000 + "\n")}, YAML_VALUE, F),
    Case("int-over-int64", "An integer of 30 digits: no JSON number the API server reads.",
         {F: config_map(data="  a: " + "9" * 30 + "\n")}, NOT_JSON, F),
    Case("nan", "A `.nan` float.", {F: config_map(data="  a: .nan\n")}, NOT_JSON, F),
    Case("merge-scalar", "A merge key of a scalar.", {F: config_map(data="  <<: 5\n")},
         "expected a mapping or list of mappings for merging", F),
    Case("merge-key-name", "A merge key that brings in an invalid name: merged content "
         "is checked as any other.",
         {F: config_map().replace(b"  name: hostile\n", b"  <<: {name: Bad_Name}\n")},
         NAME_SUB, F),
    Case("complex-key", "A sequence as a mapping key.",
         {F: config_map(data="  ? [a, b]\n  : c\n")}, NOT_JSON, F),
    Case("non-string-label-key", "An integer as a label key.",
         {F: config_map().replace(b"  annotations:", b"  labels:\n    7: x\n  annotations:")},
         "[qualified-name]", F),
    # Duplicate keys.
    Case("duplicate-key-secret", "A Secret's duplicate key: the message once quoted both "
         "values.", {F: secret(f"  password: {SECRET}\n  password: {SECRET}-2\n")},
         'found duplicate key "password"', F, secret=SECRET),
    Case("duplicate-key-metadata", "`metadata` given twice.",
         {F: config_map() + b"metadata:\n  name: other\n"}, "found duplicate key", F),
    Case("duplicate-key-intent", "The intent's id given twice.",
         {INTENT: intent(id=ID, description=f"x\n  id: {SECRET}")}, "found duplicate key",
         INTENT, secret=SECRET),
    # Shapes and required fields.
    Case("missing-api-version", "A manifest without apiVersion.",
         {F: config_map().replace(b"apiVersion: v1\n", b"")}, REQUIRED, F),
    Case("missing-kind", "A manifest without kind.",
         {F: config_map().replace(b"kind: ConfigMap\n", b"")}, REQUIRED, F),
    Case("missing-metadata", "A manifest without metadata.",
         {F: b"apiVersion: v1\nkind: ConfigMap\ndata:\n  a: b\n"}, REQUIRED, F),
    Case("missing-name", "A manifest without metadata.name.",
         {F: config_map().replace(b"  name: hostile\n", b"")}, REQUIRED, F),
    Case("name-not-a-string", "metadata.name an integer.", {F: config_map("12345")},
         REQUIRED, F),
    Case("metadata-a-list", "metadata a list.",
         {F: b"apiVersion: v1\nkind: ConfigMap\nmetadata: [a]\n"}, REQUIRED, F),
    Case("document-a-scalar", "A document that is a string.", {F: b"just text\n"},
         "a manifest must be a mapping", F),
    Case("document-a-list", "A document that is a list.", {F: b"- a\n- b\n"},
         "a manifest must be a mapping", F),
    Case("labels-a-string", "labels a string.",
         {F: config_map().replace(b"  annotations:", b"  labels: oops\n  annotations:")},
         "[metadata]", F),
    Case("annotation-not-a-string", "An annotation value that is a number.",
         {F: config_map(extra="    count: 3\n")}, "[metadata]", F),
    Case("bad-wave", "A wave that is not an integer.", {F: config_map(wave="soon")},
         "[wave]", F),
    Case("list-bad-item", "A `kind: List` whose second item has no kind (wave 0 was "
         "applied before).",
         {F: b"apiVersion: v1\nkind: List\nitems:\n- " + config_map().replace(b"\n", b"\n  ")
          + b"\n- apiVersion: v1\n  metadata: {name: x}\n"}, "needs kind", F),
    Case("list-items-not-a-list", "A `kind: List` whose items is a string.",
         {F: b"apiVersion: v1\nkind: List\nitems: nope\n"}, "items must be a list", F),
    Case("list-bad-name", "A `kind: List` holding an object with an invalid name.",
         {F: b"apiVersion: v1\nkind: List\nitems:\n- "
          + config_map("Bad_Name").replace(b"\n", b"\n  ") + b"\n"}, NAME_SUB, F),
    # Names, namespaces, kinds and keys.
    Case("name-upper-case", "An object name with capitals.", {F: config_map("Hostile")},
         NAME_SUB, F),
    Case("name-slash", "An object name with `/` (a URL path).",
         {F: config_map("a/../../kube-system")}, NAME_SUB, F),
    Case("name-question-mark", "An object name with `?` (a URL query).",
         {F: config_map("'x?dryRun=All'")}, NAME_SUB, F),
    Case("name-percent", "An object name with `%2F`.", {F: config_map("'x%2Fy'")},
         NAME_SUB, F),
    Case("name-dot-dot", "An object name `..`.", {F: config_map("'..'")}, NAME_SUB, F),
    Case("name-newline", "An object name with a newline that forges a log line.",
         {F: config_map('"x\\nERROR forged line"')}, NAME_SUB, F),
    Case("name-ansi", "An object name with ANSI escape sequences.",
         {F: config_map('"\\e[2J\\e[31mred"')}, NAME_SUB, F),
    Case("name-too-long", "An object name of 254 characters.", {F: config_map("a" * 254)},
         "is longer than 253 characters", F),
    Case("name-empty", "An empty object name.", {F: config_map("''")}, REQUIRED, F),
    Case("namespace-name-with-dot", "A Namespace named with a dot (a DNS-1123 label).",
         {F: b"apiVersion: v1\nkind: Namespace\n" + meta("sfo.ran", namespace=None).encode()},
         "[dns-1123-label]", F),
    Case("service-name-too-long", "A Service name of 64 characters (a DNS-1123 label).",
         {F: b"apiVersion: v1\nkind: Service\n" + meta("s" * 64).encode()
          + b"spec:\n  ports: [{port: 80}]\n"}, "is longer than 63 characters", F),
    Case("rbac-name-dot-dot", "A Role named `..` (a path segment).",
         {F: b"apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n"
          + meta("'..'").encode()}, "[path-segment]", F),
    Case("namespace-traversal", "metadata.namespace `../kube-system`.",
         {F: config_map(namespace="../kube-system")}, "[namespace]", F),
    Case("namespace-newline", "metadata.namespace with a newline.",
         {F: config_map(namespace='"sfo-ran\\nINFO forged"')}, "[namespace]", F),
    Case("api-version-traversal", "apiVersion `../../api/v1` (a URL path).",
         {F: config_map().replace(b"apiVersion: v1", b"apiVersion: ../../api/v1")},
         "[api-version]", F),
    Case("unknown-kind", "A kind the cluster does not serve, in a late wave (wave 0 was "
         "applied before).", {F: config_map().replace(b"kind: ConfigMap", b"kind: Bogus")},
         "[unknown-kind]", F, layer="cluster"),
    Case("unknown-group", "A kind of an API group no CRD defines.",
         {F: config_map().replace(b"apiVersion: v1", b"apiVersion: example.com/v1")},
         "[unknown-kind]", F, layer="cluster"),
    Case("kind-with-slash", "A kind with `/`.",
         {F: config_map().replace(b"kind: ConfigMap", b"kind: Config/Map")}, "[kind]", F),
    Case("label-key-invalid", "A label key with spaces.",
         {F: config_map().replace(b"  annotations:", b"  labels:\n    'bad key!': x\n"
                                  b"  annotations:")}, "[qualified-name]", F),
    Case("label-value-invalid", "A label value with a newline.",
         {F: config_map().replace(b"  annotations:", b"  labels:\n    k: \"v\\nw\"\n"
                                  b"  annotations:")}, "[label-value]", F),
    Case("annotation-key-two-slashes", "An annotation key `a/b/c`.",
         {F: config_map(extra="    a/b/c: x\n")}, "[qualified-name]", F),
    Case("file-name-ansi", "A file whose name holds an ANSI escape, with a bad manifest.",
         {f"{M}/\x1b[31mred.yaml": config_map("Bad")}, NAME_SUB, f"{M}/\\x1b[31mred.yaml"),
    Case("commit-subject-ansi", "A commit whose subject clears the terminal, with a bad "
         "manifest: the subject is logged escaped.", {F: config_map("Bad")}, NAME_SUB, F,
         subject="\x1b[2J\x1b[31mall is well"),
    Case("file-name-newline", "A file whose name holds a newline, with a bad manifest.",
         {f"{M}/a\nERROR forged.yaml": config_map("Bad")}, NAME_SUB,
         f"{M}/a\\nERROR forged.yaml"),
    # The file tree: symlinks, traversal, submodules.
    Case("symlink-outside", "A manifest that is a symlink to /etc/passwd "
         "(CVE-2022-24904).", {F: Symlink("/etc/passwd")}, SYMLINK, F),
    Case("symlink-inside", "A manifest that is a symlink to another site's file.",
         {F: Symlink("../../edge-nyc-02/manifests/30-configmap.yaml")}, SYMLINK, F),
    Case("symlink-traversal", "A folder symlink `..`-climbing out of the repository "
         "(CVE-2022-24877).", {f"{M}/up": Symlink("../../../..")}, SYMLINK, f"{M}/up"),
    Case("manifests-symlink", "manifests/ replaced by a symlink to another site's.",
         {M: Symlink("../edge-nyc-02/manifests")}, SYMLINK, M),
    Case("intent-symlink", "intent.yaml a symlink.",
         {INTENT: Symlink("../edge-nyc-02/intent.yaml")}, SYMLINK, INTENT),
    Case("manifests-file", "manifests/ replaced by a file (pruned the whole site before).",
         {M: b"not a folder\n"}, "is not a folder", M, layer="pipeline"),
    Case("manifests-submodule", "manifests/ replaced by a submodule.",
         {M: Submodule()}, "is not a folder", M, layer="pipeline"),
    Case("manifests-deleted", "manifests/ deleted.", {M: REMOVE}, "is missing", M,
         layer="pipeline"),
    Case("crd-bad-name", "A CRD in the shared crds/ folder with an invalid name.",
         {"crds/hostile.yaml": b"apiVersion: apiextensions.k8s.io/v1\n"
          b"kind: CustomResourceDefinition\nmetadata:\n  name: Widgets/../x\n"}, NAME_SUB,
         "crds/hostile.yaml"),
    Case("crds-symlink", "A file of crds/ that is a symlink out of the repository.",
         {"crds/hostile.yaml": Symlink("/etc/hostname")}, SYMLINK, "crds/hostile.yaml"),
    # The intent.
    Case("intent-not-yaml", "An intent that is not YAML.", {INTENT: b"a: b: c\n"},
         "mapping values are not allowed", INTENT),
    Case("intent-python-tag", "An intent with `!!python/object`.",
         {INTENT: intent(description="!!python/object:os.system {}")},
         "could not determine a constructor for the tag", INTENT),
    Case("intent-bad-bool", "The intent's prune a `!!bool \"maybe\"`.",
         {INTENT: intent().replace(b"prune: true", b'prune: !!bool "maybe"')},
         YAML_VALUE, INTENT),
    Case("intent-huge-sequence", "The intent's sequence of 5,000 digits.",
         {INTENT: intent(sequence="9" * 5000)}, YAML_VALUE, INTENT),
    Case("intent-two-documents", "Two intents in one file.",
         {INTENT: intent() + b"---\n" + intent()}, "expected exactly one YAML document",
         INTENT),
    Case("intent-empty", "An empty intent file.", {INTENT: b""},
         "expected exactly one YAML document", INTENT),
    Case("intent-bad-id", "An intent id with `/` and `..`.",
         {INTENT: intent(id="../../etc")}, "invalid intent", INTENT),
    Case("intent-name-newline", "The intent's metadata.name with a newline.",
         {INTENT: intent().replace(f"name: {SITE}".encode(), b'name: "x\\nERROR forged"')},
         "invalid intent", INTENT),
    Case("intent-utf-16", "The intent in UTF-16.",
         {INTENT: intent().decode().encode("utf-16")}, "(rule: encoding)", INTENT),
    Case("intent-missing", "The intent file deleted.", {INTENT: REMOVE},
         "every site needs an intent file", INTENT),
)


def write(work: Path, case: Case, *, intent_id: str) -> None:
    """Write `case`'s files into the Git work tree `work` (committed by the caller with
    `git add -A`); a submodule is added to the index here, as `add -A` cannot make one."""
    for path, content in case.files.items():
        target = work / path
        _clear(target)
        if content is REMOVE:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Symlink):
            os.symlink(content.target, target)
        elif isinstance(content, Submodule):
            target.mkdir()  # an empty folder: a submodule not checked out
            head = gitrepo.git("rev-parse", "HEAD", cwd=work)
            gitrepo.git("rm", "-rq", "--cached", "--ignore-unmatch", path, cwd=work)
            gitrepo.git("update-index", "--add", "--cacheinfo", f"160000,{head},{path}",
                        cwd=work)
        else:
            assert isinstance(content, bytes)
            target.write_bytes(content.replace(ID.encode(), intent_id.encode()))


def restamp(work: Path, *, intent_id: str) -> None:
    """Give the site's intent and manifests in `work` the new `intent_id`, sequence 2."""
    remote = gitrepo.GitRemote.__new__(gitrepo.GitRemote)  # only its work tree is used
    remote.work = work
    gitrepo.restamp(remote, site=SITE, new_id=intent_id, sequence=2)


def _clear(target: Path) -> None:
    """Remove whatever is at `target` (file, symlink or folder)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        for child in sorted(target.rglob("*"), reverse=True):
            child.unlink() if child.is_symlink() or not child.is_dir() else child.rmdir()
        target.rmdir()


def by_name(name: str) -> Case:
    """The case called `name`."""
    return next(case for case in CASES if case.name == name)
