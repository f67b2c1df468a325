"""The `reconciler` command line: parse flags, run one command, map errors to exit codes.

Exit codes: 0 ok, 1 failed (refused intent, fetch/parse/apply error), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler import __version__, cluster, contract, durations, errors
from reconciler.repo import bundle
from reconciler.site import report, state

if typing.TYPE_CHECKING:
    from reconciler.site import abort as aborts

log = logging.getLogger("reconciler")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


DURATION_FORMAT = "30s, 5m, 1m30s, 1h, 500ms; a bare whole number is seconds"


def _duration(text: str) -> float:
    """A duration flag's value, through the one parser (durations.parse)."""
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _size(text: str) -> int:
    try:
        return bundle.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """--max-file-size and --max-site-size: what a site's files may hold, the same for every
    command that reads them (bundle.Limits)."""
    defaults = bundle.Limits()
    parser.add_argument("--max-file-size", type=_size, default=defaults.max_file_bytes,
                        metavar="SIZE",
                        help="largest file a site may have (default: "
                             f"{bundle.format_size(defaults.max_file_bytes)}; 512Ki, 8Mi, 1G, "
                             "or bytes)")
    parser.add_argument("--max-site-size", type=_size, default=defaults.max_site_bytes,
                        metavar="SIZE",
                        help="most bytes a site's files may hold together, crds/ included "
                             f"(default: {bundle.format_size(defaults.max_site_bytes)})")


def _limits(args: argparse.Namespace) -> bundle.Limits:
    return bundle.Limits(max_file_bytes=args.max_file_size, max_site_bytes=args.max_site_size)


def _add_git_flags(parser: argparse.ArgumentParser) -> None:
    """How git reaches the remote (source.Access, docs/git.md), the same for every command
    that fetches or pushes; each flag has an environment variable for a container's spec."""
    env = os.environ.get
    parser.add_argument("--git-credentials-file", type=Path, metavar="FILE",
                        default=env("RECONCILER_GIT_CREDENTIALS_FILE") or None,
                        help="https credentials: a file holding `username:password` or a "
                             "token, or the folder a basic-auth Secret is mounted at; read "
                             "on each fetch, never put in a URL, argument or log "
                             "($RECONCILER_GIT_CREDENTIALS_FILE)")
    parser.add_argument("--ssh-key-file", type=Path, metavar="FILE",
                        default=env("RECONCILER_SSH_KEY_FILE") or None,
                        help="ssh private key to authenticate with, and no other "
                             "($RECONCILER_SSH_KEY_FILE)")
    parser.add_argument("--known-hosts-file", type=Path, metavar="FILE",
                        default=env("RECONCILER_KNOWN_HOSTS_FILE") or None,
                        help="the ssh host keys to trust, and no others: an unknown host is "
                             "refused ($RECONCILER_KNOWN_HOSTS_FILE)")
    parser.add_argument("--git-timeout", type=_duration, metavar="DURATION",
                        default=env("RECONCILER_GIT_TIMEOUT") or "2m",
                        help="longest one fetch or push may take before git and its helpers "
                             "are stopped (default: 2m; $RECONCILER_GIT_TIMEOUT)")


def _access(args: argparse.Namespace) -> Any:
    """The flags of _add_git_flags() as a source.Access."""
    from reconciler.repo import source

    return source.Access(credentials_file=args.git_credentials_file,
                         ssh_key_file=args.ssh_key_file,
                         known_hosts_file=args.known_hosts_file, timeout=args.git_timeout)


def _add_signature_flags(parser: argparse.ArgumentParser) -> None:
    """--verify-signatures and its trusted keys (signatures.Trust, docs/git.md), for the
    commands that fetch a site's intent; the key files have environment variables."""
    env = os.environ.get
    parser.add_argument("--verify-signatures", action="store_true",
                        default=os.environ.get("RECONCILER_VERIFY_SIGNATURES") or False,
                        help="refuse a fetched head that is unsigned, signed by a key outside "
                             "--trusted-keys/--allowed-signers, or whose signature does not "
                             "verify, and one over such a commit that changed the site's "
                             "files: nothing of it is applied, the intent in force stays "
                             "($RECONCILER_VERIFY_SIGNATURES=true)")
    parser.add_argument("--trusted-keys", type=Path, metavar="FILE",
                        default=env("RECONCILER_TRUSTED_KEYS") or None,
                        help="OpenPGP public keys a head may be signed by, armored or binary "
                             "(gpg --export); imported into a private keyring for each check, "
                             "never ~/.gnupg ($RECONCILER_TRUSTED_KEYS)")
    parser.add_argument("--allowed-signers", type=Path, metavar="FILE",
                        default=env("RECONCILER_ALLOWED_SIGNERS") or None,
                        help="ssh keys a head may be signed by, in git's "
                             "gpg.ssh.allowedSignersFile format ($RECONCILER_ALLOWED_SIGNERS)")


def _env_flag(value: object, *, name: str) -> bool:
    """A store_true flag whose default came from the environment variable `name` (a
    string there): true/false, yes/no, on/off, 1/0; UsageError naming it otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise errors.UsageError(f"${name} must be true or false, not "
                            f"{errors.printable(text[:40])!r}")


def _trust(args: argparse.Namespace) -> Any:
    """The flags of _add_signature_flags() as a signatures.Trust, or None when signatures
    are not verified; UsageError when they cannot serve."""
    from reconciler.repo import signatures

    trust = signatures.Trust(keyring=args.trusted_keys, allowed_signers=args.allowed_signers)
    verify = _env_flag(args.verify_signatures, name="RECONCILER_VERIFY_SIGNATURES")
    signatures.check(trust=trust, verify=verify)
    return trust if verify else None


# What add_subparsers() returns; generic for type checkers only, so a string at run time.
_Commands: typing.TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _command(commands: _Commands, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that takes -v and -q after its name too (SUPPRESS keeps a flag given
    before it), with the help layout every command shares."""
    logging_flags = argparse.ArgumentParser(add_help=False)
    _add_log_flags(logging_flags, default=argparse.SUPPRESS)
    kwargs.setdefault("formatter_class", _Formatter)
    return commands.add_parser(name, parents=[logging_flags], **kwargs)


def _add_sync_flags(parser: argparse.ArgumentParser, *, many_sites: bool = False) -> None:
    parser.add_argument("--repo", required=True, metavar="URL",
                        help="Git repository: a path, file://, git://, http(s):// or ssh:// URL")
    if many_sites:
        parser.add_argument("--site", required=True, action="append", metavar="SITE",
                            help="a site to reconcile (sites/<SITE>/); repeat it for several, "
                                 "each with its own worker in this process")
    else:
        parser.add_argument("--site", required=True,
                            help="the site to reconcile (sites/<SITE>/)")
    parser.add_argument("--branch", default=contract.DEFAULT_BRANCH,
                        help="branch to follow (default: %(default)s)")
    parser.add_argument("--state-dir", type=Path, default=contract.DEFAULT_STATE_DIR,
                        help="where <site>.json is kept (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Git cache that survives restarts (default: <state-dir>/.git-cache)")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("--request-timeout", type=_duration, default=30.0, metavar="DURATION",
                        help="how long to wait for the API server's answer to one request "
                             "(default: 30s); every write asks the server to give up after "
                             "two thirds of it, so a write this process abandoned never "
                             "takes effect later")
    parser.add_argument("--allow-history-rewrite", action="store_true",
                        help="accept a new head that does not descend from the last fetched one")
    _add_limit_flags(parser)
    _add_git_flags(parser)
    _add_signature_flags(parser)
    parser.add_argument("--force-conflicts", action="store_true",
                        help="take over fields another field manager owns (server-side "
                             "apply), never another site's (reconciler/<site>)")
    _add_policy_flags(parser)
    _add_state_flags(parser)
    parser.add_argument("--adopt", action="store_true",
                        help="a site with no state takes the intent at the head even though "
                             "the cluster holds objects applied for it (its state was lost); "
                             "without it such a site is refused")
    parser.add_argument("--max-prune-fraction", type=_fraction, default=0.5,
                        metavar="FRACTION",
                        help="refuse a revision that would prune more than this share of "
                             "the site's objects (sites of 10 or more; one that desires "
                             "nothing is always refused unless this is 1), before anything "
                             "is applied; `rollout.prune: allowEmpty` in the intent allows "
                             "it (default 0.5)")


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    """The site's policy (site/policy.py, docs/policy.md): what the operator lets the
    repository write. A revision with an object outside it is refused; prune never deletes
    one."""
    from reconciler.site import policy

    denied = ", ".join(policy.DEFAULT_DENIED_NAMESPACES)
    parser.add_argument("--allow-namespace", action="append", default=[], metavar="NS",
                        type=_namespace_rule,
                        help="only objects in these namespaces (repeatable; shell patterns "
                             f"such as sfo-*); naming {denied} exactly lifts its default deny")
    parser.add_argument("--deny-namespace", action="append", default=[], metavar="NS",
                        type=_namespace_rule,
                        help=f"never objects in these namespaces (repeatable; patterns); "
                             f"{denied} are denied by default")
    parser.add_argument("--allow-kind", action="append", default=[], metavar="KIND",
                        type=_kind_rule,
                        help="only objects of these kinds (repeatable): Kind (every API "
                             "group) or Kind.group (e.g. Deployment.apps)")
    parser.add_argument("--deny-kind", action="append", default=[], metavar="KIND",
                        type=_kind_rule,
                        help="never objects of these kinds (repeatable; wins over "
                             "--allow-kind), e.g. ClusterRoleBinding")


def _namespace_rule(text: str) -> str:
    """A namespace or a shell pattern of namespaces, for --allow/deny-namespace."""
    from reconciler.site import policy

    if not policy.NAMESPACE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace or a pattern of namespaces (lower case letters, "
            "digits, '-', and the patterns * ? [ ])")
    return text


def _kind_rule(text: str) -> str:
    """`Kind` or `Kind.group`, for --allow/deny-kind: a rule that could never match (a
    lower-case or plural kind, a group cut short) is a usage error naming the spelling."""
    from reconciler.site import policy

    problem = policy.kind_rule_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} is not a kind rule: {problem}")
    return text


def _policy(args: argparse.Namespace) -> Any:
    """The flags of _add_policy_flags() as a policy.Policy."""
    from reconciler.site import policy

    return policy.Policy(allow_namespaces=tuple(args.allow_namespace),
                         deny_namespaces=tuple(args.deny_namespace),
                         allow_kinds=tuple(args.allow_kind), deny_kinds=tuple(args.deny_kind))


def _fraction(text: str) -> float:
    """A share between 0 and 1, for --max-prune-fraction."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from exc
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _add_state_flags(parser: argparse.ArgumentParser) -> None:
    """--state-store and --state-namespace: where a site's record lives (docs/ha.md)."""
    parser.add_argument("--state-store", choices=["file", "kubernetes"], default="file",
                        help="keep each site's state in <state-dir>/<site>.json (file, the "
                             "default) or in the ConfigMap reconciler-state-<site> of "
                             "--state-namespace (kubernetes; `run` then takes the Lease "
                             "reconciler-<site> there, so replicas share sites)")
    parser.add_argument("--state-namespace", default=None, metavar="NS",
                        help="namespace of the state ConfigMaps and Leases (default: the "
                             "pod's own namespace, else reconciler-system)")


def _add_log_flags(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debug detail")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="log warnings and errors only")
    parser.add_argument("--log-format", choices=["text", "json"],
                        default=(os.environ.get("RECONCILER_LOG_FORMAT") or "text")
                        if default is not argparse.SUPPRESS else default,
                        help="log lines as text, or one JSON object each (time, level, "
                             "logger, message, site) ($RECONCILER_LOG_FORMAT)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler", formatter_class=_Formatter,
        description="An intent-fenced GitOps reconciler: applies only the manifests that "
                    "carry a site's accepted intent id, and drops the rest as stale.",
        epilog="examples:\n"
               "  reconciler demo\n"
               "  reconciler sync --repo https://git.example.com/fleet.git --site edge-sfo-01\n"
               "  reconciler status --site edge-sfo-01 -o json\n"
               "  reconciler local-cluster --port 8001 --kubeconfig-out local.kubeconfig\n"
               "  reconciler validate ./fleet --strict\n"
               "  reconciler intent publish --site edge-sfo-01 -m 'UPF 2.4' --push\n"
               "  reconciler reconcile --site edge-sfo-01      # the running agent, now\n"
               "  reconciler suspend --site edge-sfo-01 --reason 'maintenance'\n"
               "  source <(reconciler completion bash)\n",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_log_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sync = _command(
        commands, "sync",
        help="one reconcile pass of one site, then exit",
        description="Fetch the branch, read the site's intent and manifests, accept or refuse "
                    "the intent, apply the manifests that carry it, record the outcome.\n"
                    "Exit 0 when the site holds the accepted intent, 1 when the intent was "
                    "refused or anything failed, 2 on a usage error. Drops alone do not fail.",
        epilog="examples:\n"
               "  reconciler sync --repo ./fleet --site edge-sfo-01\n"
               "  reconciler sync --repo git://git.lab:9418/fleet.git --site edge-nyc-02 \\\n"
               "      --branch production --state-dir /var/lib/reconciler \\\n"
               "      --kubeconfig edge.kubeconfig\n",
    )
    _add_sync_flags(sync)
    sync.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")

    run = _command(
        commands, "run",
        help="the long-running site agent: reconcile on a poll interval and on pushes",
        description="Fetch on a poll interval (with 10% jitter) and, for a local repository, "
                    "as soon as its refs change; roll the accepted intent out wave by wave; "
                    "abort a running rollout the moment a newer intent is accepted. SIGTERM "
                    "or SIGINT ends the wait in progress, records the state and exits 0.",
        epilog="examples:\n"
               "  reconciler run --repo https://git.example.com/fleet.git --site edge-sfo-01\n"
               "  reconciler run --repo /srv/git/fleet.git --site edge-sfo-01 --interval 5m\n"
               "  reconciler run --repo https://git.example.com/fleet.git --site edge-sfo-01 \\\n"
               "      --site edge-nyc-02 --state-store kubernetes   # replicas share the sites\n",
    )
    _add_sync_flags(run, many_sites=True)
    run.add_argument("--lease-duration", type=_duration, default=15.0, metavar="DURATION",
                     help="with --state-store kubernetes: how long a site's Lease lasts "
                          "unrenewed before another replica takes it (default: 15s); the "
                          "holder renews every third of it and stops applying two thirds "
                          "in when it could not")
    run.add_argument("--interval", type=_duration, default=30.0, metavar="DURATION",
                     help=f"time between fetches (default: 30s; {DURATION_FORMAT})")
    run.add_argument("--max-backoff", type=_duration, default=300.0, metavar="DURATION",
                     help="after a failed pass the next comes after 1s, 2s, 4s, ... (with "
                          "jitter) up to this (default: 5m); a good pass resets it")
    run.add_argument("--no-file-watch", action="store_true",
                     help="for a local repository, poll only: do not watch its refs")
    _add_endpoint_flags(run)

    status = _command(
        commands, "status", help="show a site's accepted intent, last sync, "
        "drops, errors and history",
        description="Show the site's record: the accepted intent, whether it is suspended, "
                    "the rollout per wave, the last sync, drops, errors and the history.",
        epilog="examples:\n"
               "  reconciler status --site edge-sfo-01\n"
               "  reconciler status --state-dir /var/lib/reconciler --site edge-sfo-01 -o json\n"
               "  reconciler status --site edge-sfo-01 -o yaml\n"
               "  reconciler status --site edge-sfo-01 --watch\n"
               "  reconciler status --site edge-sfo-01 -q >/dev/null || page-the-on-call\n"
               "\n"
               "exit codes:\n"
               "  0  the site is fine: its last sync ended ok, is running, or was aborted\n"
               "     for a newer intent (a suspended site is fine too)\n"
               "  1  its last sync failed or refused an intent, or its last rollout failed\n"
               "     (the reason is also printed on stderr); or the state cannot be read\n"
               "  2  usage error: no such site, several sites and no --site\n",
    )
    status.add_argument("--state-dir", type=Path, default=contract.DEFAULT_STATE_DIR,
                        help="where <site>.json is kept (default: %(default)s)")
    status.add_argument("--site", default=None,
                        help="the site (default: the only site in the state dir)")
    _add_state_flags(status)
    status.add_argument("--kubeconfig", type=Path, default=None,
                        help="with --state-store kubernetes: kubeconfig file")
    status.add_argument("--context", default=None, help="kubeconfig context to use")
    status.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    status.add_argument("-w", "--watch", action="store_true",
                        help="refresh every second until Ctrl-C (text output)")

    local = _command(
        commands, "local-cluster",
        help="serve the embedded local Kubernetes API on loopback",
        description="An in-memory Kubernetes API server for the demo, tests and trying things "
                    "out: discovery, server-side apply, CRDs, status, watches, and simulated "
                    "controllers that bring WorkloadClusters and NetworkFunctions to Ready.",
        epilog="examples:\n"
               "  reconciler local-cluster --port 8001 --kubeconfig-out local.kubeconfig\n"
               "  kubectl --kubeconfig local.kubeconfig get namespaces\n"
               "  reconciler local-cluster --request-log requests.jsonl --ready-delay 5s\n",
    )
    local.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: %(default)s); anything but a loopback "
                            "address needs --insecure-serve-unauthenticated")
    local.add_argument("--insecure-serve-unauthenticated", action="store_true",
                       help="allow a --host others can reach: the local cluster has no "
                            "authentication or authorization, so anyone who reaches it may "
                            "read and write every object")
    local.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    local.add_argument("--kubeconfig-out", type=Path, default=None,
                       help="write a kubeconfig for the cluster here")
    local.add_argument("--request-log", type=Path, default=None,
                       help="append one JSON line per API request served")
    local.add_argument("--ready-delay", type=_duration, default=2.0, metavar="DURATION",
                       help="time the simulated controllers take to reach Ready "
                            f"(default: 2s; {DURATION_FORMAT})")

    _add_manager_commands(commands)
    _add_rbac_command(commands)
    _add_control_commands(commands)
    _add_completion_command(commands)

    demo = _command(
        commands, "demo",
        help="the whole story on the embedded local cluster, in under a minute",
        description="Starts the local cluster, makes a Git repository from the sample, syncs "
                    "edge-sfo-01, lands a second intent in which one manifest still carries the "
                    "old id, syncs again, and shows what was accepted, applied and dropped.",
    )
    demo.add_argument("--workdir", type=Path, default=None,
                      help="keep the demo's repository and state here (default: a temp dir)")
    demo.add_argument("--ready-delay", type=_duration, default=1.0, metavar="DURATION",
                      help=f"simulated controllers' delay to Ready (default: 1s; "
                           f"{DURATION_FORMAT})")
    return parser


def _add_manager_commands(commands: _Commands) -> None:
    """`validate`, `plan` and `intent publish`: the manager's side and pull-request review."""
    check = _command(
        commands, "validate",
        help="check a repository checkout: YAML, schemas, intent consistency, duplicates",
        description="Read every site (or the sites named) of the repository checkout at PATH "
                    "and report every broken rule with file:line:column: YAML syntax, the "
                    "intent schema, custom resources against schemas/ and the openAPIV3Schema "
                    "of the CRDs in the repository, built-in kinds against Kubernetes' own "
                    "schemas (kubernetes-validate), manifests whose intent id differs from "
                    "their site's intent (a warning; an error with --strict), objects defined "
                    "twice in a site, and namespaced kinds without a namespace.\n"
                    "Exit 0 when clean (warnings allowed), 1 on any error, 2 on a usage error.",
        epilog="examples:\n"
               "  reconciler validate\n"
               "  reconciler validate ./fleet --site edge-sfo-01 --strict\n"
               "  reconciler validate -o github        # annotations in a GitHub Actions job\n"
               "  reconciler validate -o json | jq '.findings[] | select(.severity==\"error\")'\n",
    )
    check.add_argument("path", nargs="?", type=Path, default=Path("."), metavar="PATH",
                       help="repository checkout (default: the current directory)")
    check.add_argument("--site", action="append", default=None, metavar="SITE",
                       help="check only this site (repeatable; default: every site)")
    check.add_argument("--strict", action="store_true",
                       help="a manifest whose intent id differs from its site's is an error")
    check.add_argument("--kube-version", default=None, metavar="X.Y",
                       help="Kubernetes version whose schemas built-in kinds are checked "
                            "against (default: the newest kubernetes-validate ships)")
    check.add_argument("-o", "--output", choices=["text", "json", "yaml", "github"],
                       default="text")
    _add_limit_flags(check)

    plan = _command(
        commands, "plan",
        help="what a commit would do at a site: intent verdict, objects, drops, prunes",
        description="Read the site at REF and decide as `sync` would, without changing "
                    "anything: whether the intent is accepted, kept or refused against the "
                    "site's recorded state, which objects would be created, configured or "
                    "left unchanged, which manifests would be dropped, and what would be "
                    "pruned. With a kubeconfig the objects are compared by a server-side "
                    "apply dry run against the live cluster; without one, against the "
                    "site's recorded inventory. The text output is Markdown, ready to post "
                    "as a pull-request comment.\n"
                    "Exit 0 when the intent would be accepted or kept and the revision is "
                    "valid, 1 when it would be refused or is invalid, 2 on a usage error.",
        epilog="examples:\n"
               "  reconciler plan --repo . --site edge-sfo-01 --ref HEAD\n"
               "  reconciler plan --repo https://git.example.com/fleet.git --site edge-sfo-01 \\\n"
               "      --ref refs/pull/42/head --state-dir site-state/ -o json\n"
               "  reconciler plan --repo ./fleet --site edge-sfo-01 --kubeconfig edge.kubeconfig\n",
    )
    plan.add_argument("--repo", required=True, metavar="URL",
                      help="Git repository: a path, file://, git://, http(s):// or ssh:// URL")
    plan.add_argument("--site", required=True, help="the site to plan for (sites/<SITE>/)")
    plan.add_argument("--ref", default=contract.DEFAULT_BRANCH,
                      help="branch, tag, commit or ref to plan (default: %(default)s)")
    plan.add_argument("--state-dir", type=Path, default=contract.DEFAULT_STATE_DIR,
                      help="the site's recorded state: accepted intent and inventory "
                           "(default: %(default)s; a site without state plans as a first sync)")
    plan.add_argument("--cache-dir", type=Path, default=None,
                      help="Git cache (default: $XDG_CACHE_HOME/intent-reconciler/plan or "
                           "~/.cache/intent-reconciler/plan: nothing is written to the "
                           "checkout)")
    plan.add_argument("--kubeconfig", type=Path, default=None,
                      help="compare against this live cluster with a server-side apply dry run")
    plan.add_argument("--context", default=None, help="kubeconfig context to use")
    plan.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    _add_limit_flags(plan)
    _add_git_flags(plan)
    _add_signature_flags(plan)
    _add_policy_flags(plan)

    intent = _command(
        commands, "intent", help="the manager's side: publish a new intent",
        description="Commands the manager runs on a repository checkout.",
    )
    intent_commands = intent.add_subparsers(dest="intent_command", metavar="COMMAND",
                                            required=True)
    publish = _command(
        intent_commands, "publish",
        help="stamp a new intent id into a site's manifests and commit it",
        description="Stamp reconciler.dev/intent-id into every manifest of the site with a "
                    "round-trip YAML edit (comments, key order, quoting, flow style, anchors "
                    "and document separators stay exactly as they were; only the stamped "
                    "lines change), write the site's intent.yaml, and commit with Intent-Id: "
                    "and Site: trailers. Signs with git's own gpg or ssh signing config when "
                    "asked; pushes when asked. Refuses a dirty work tree unless --allow-dirty.",
        epilog="examples:\n"
               "  reconciler intent publish --site edge-sfo-01 -m 'Upgrade the UPF to 2.4'\n"
               "  reconciler intent publish --repo ./fleet --site edge-sfo-01 \\\n"
               "      --id upf-2-4-rollout --sequence 8 -m 'UPF 2.4' --sign --push\n"
               "  reconciler intent publish --site edge-sfo-01 -m 'try' --dry-run\n",
    )
    publish.add_argument("--repo", type=Path, default=Path("."), metavar="PATH",
                         help="repository work tree (default: the current directory)")
    publish.add_argument("--site", required=True, help="the site to publish (sites/<SITE>/)")
    publish.add_argument("--id", dest="intent_id", default=None, metavar="ID",
                         help="the new intent id, [A-Za-z0-9._-]{1,63} (default: generated "
                              "from the site, the date and a random suffix)")
    publish.add_argument("--sequence", type=int, default=None, metavar="N",
                         help="the intent's sequence (default: one higher than the last)")
    publish.add_argument("-m", "--message", required=True, metavar="MSG",
                         help="commit message; its first line is also the intent's description")
    publish.add_argument("--description", default=None,
                         help="the intent's description (default: the message's first line)")
    publish.add_argument("--sign", action="store_true",
                         help="sign the commit with git's signing config (gpg or ssh)")
    publish.add_argument("--push", action="store_true",
                         help="push the commit to the branch's upstream (or --remote)")
    publish.add_argument("--remote", default=None,
                         help="remote to push to (default: the branch's upstream, or origin)")
    publish.add_argument("--allow-dirty", action="store_true",
                         help="publish even if the work tree has uncommitted changes")
    publish.add_argument("--dry-run", action="store_true",
                         help="show the diff that would be committed; change nothing")
    publish.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    _add_limit_flags(publish)
    _add_git_flags(publish)


def _add_rbac_command(commands: _Commands) -> None:
    """`rbac`: the ClusterRole a site's manifests need (manager/rbac.py, docs/deploy.md)."""
    rbac = _command(
        commands, "rbac",
        help="print the ClusterRole (and its binding) the reconciler needs for a site's "
             "manifests",
        description="Read the site's manifests and crds/ at PATH as sync reads them, map "
                    "each apiVersion/kind to its resource (built-in kinds from Kubernetes' "
                    "own discovery, custom kinds from the CRDs in the repository), and print "
                    f"the ClusterRole {contract.SITE_CLUSTER_ROLE} with the verbs the "
                    "reconciler uses on them (create, delete, get, list, patch; get, list, "
                    "create, patch for the shared CRDs of crds/), bound to its service "
                    "account. Apply it in place of the one deploy/ ships to widen what the "
                    "reconciler may manage. A kind no CRD in the repository defines gets the "
                    "resource Kubernetes would guess, with a warning.\n"
                    "Exit 0 when printed, 1 when a site cannot be read, 2 on a usage error.",
        epilog="examples:\n"
               "  reconciler rbac --site edge-sfo-01 ./fleet | kubectl apply -f -\n"
               "  reconciler rbac --site edge-sfo-01 --site edge-nyc-02 -o json\n",
    )
    rbac.add_argument("path", nargs="?", type=Path, default=Path("."), metavar="PATH",
                      help="repository checkout (default: the current directory)")
    rbac.add_argument("--site", required=True, action="append", metavar="SITE",
                      help="a site whose manifests the role must cover (repeatable: the "
                           "role covers them all, as one reconciler running them needs)")
    rbac.add_argument("--name", default=contract.SITE_CLUSTER_ROLE,
                      help="the ClusterRole's and binding's name (default: %(default)s)")
    rbac.add_argument("--namespace", default=contract.DEPLOY_NAMESPACE,
                      help="the service account's namespace (default: %(default)s)")
    rbac.add_argument("--service-account", default=contract.SERVICE_ACCOUNT,
                      help="the reconciler's service account (default: %(default)s)")
    rbac.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    _add_limit_flags(rbac)


def _add_endpoint_flags(run: argparse.ArgumentParser) -> None:
    """`run`'s HTTP endpoints: webhooks, metrics and probes (docs/deploy.md)."""
    env = os.environ.get
    run.add_argument("--webhook-port", type=int, default=None, metavar="PORT",
                     help="serve push webhooks on this port: /hooks/github, /hooks/gitlab, "
                          "/hooks/gitea, /hooks/generic; a push to the branch fetches at once")
    run.add_argument("--webhook-secret-file", type=Path, metavar="FILE",
                     default=env("RECONCILER_WEBHOOK_SECRET_FILE") or None,
                     help="the webhooks' shared secret, read from this file (default: "
                          "$RECONCILER_WEBHOOK_SECRET); required with --webhook-port")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve Prometheus metrics on /metrics, and /healthz and /readyz, "
                          "on this port (it may be the webhook port)")


def _add_control_commands(commands: _Commands) -> None:
    """`reconcile`, `suspend`, `resume`: requests to a site's running agent, written to the
    site's control record, which the agent reads every second (site/control.py)."""
    def site_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--site", required=True, action="append", metavar="SITE",
                            help="the site (repeatable)")
        parser.add_argument("--state-dir", type=Path, default=contract.DEFAULT_STATE_DIR,
                            help="the agent's --state-dir (default: %(default)s)")
        _add_state_flags(parser)
        parser.add_argument("--kubeconfig", type=Path, default=None,
                            help="with --state-store kubernetes: kubeconfig file")
        parser.add_argument("--context", default=None, help="kubeconfig context to use")

    where = ("The request is written next to the site's state, where the agent looks every "
             "second: <state-dir>/<site>.control.json, or with --state-store kubernetes "
             "the annotations of the ConfigMap reconciler-control-<site>, so it reaches an "
             "agent in a pod, whichever replica holds the site.")
    reconcile = _command(
        commands, "reconcile",
        help="ask the running agent to reconcile a site now",
        description="Ask the running agent (`reconciler run`) to fetch and reconcile the site "
                    "now instead of at its next poll. " + where + "\n"
                    "Exit 0 when requested (with --wait: when the pass it started ended ok), "
                    "1 when the site is suspended, the request cannot be written, or (with "
                    "--wait) the pass failed or did not end within --timeout; 2 on a usage "
                    "error.",
        epilog="examples:\n"
               "  reconciler reconcile --site edge-sfo-01\n"
               "  reconciler reconcile --site edge-sfo-01 --wait --timeout 5m\n"
               "  reconciler reconcile --site edge-sfo-01 --state-store kubernetes \\\n"
               "      --state-namespace reconciler-system --kubeconfig edge.kubeconfig\n",
    )
    site_flags(reconcile)
    reconcile.add_argument("--wait", action="store_true",
                           help="wait until a pass that started after the request ends, and "
                                "exit as it did")
    reconcile.add_argument("--timeout", type=_duration, default=120.0, metavar="DURATION",
                           help=f"with --wait: how long to wait (default: 2m; "
                                f"{DURATION_FORMAT})")
    suspend = _command(
        commands, "suspend",
        help="stop reconciling a site until it is resumed",
        description="Suspend the site: the agent stops fetching, accepting and applying it "
                    "(a rollout already running ends as it would have), `sync` refuses it, "
                    "and `status` shows who suspended it, when and why. It holds across "
                    "restarts and for every replica. " + where + "\n"
                    "Exit 0 when recorded, 1 when it cannot be written, 2 on a usage error.",
        epilog="examples:\n"
               "  reconciler suspend --site edge-sfo-01 --reason 'maintenance window CHG-1234'\n"
               "  reconciler suspend --site edge-sfo-01 --site edge-nyc-02 --by noc-oncall\n",
    )
    site_flags(suspend)
    suspend.add_argument("--reason", default="", help="why, shown by `status`")
    suspend.add_argument("--by", default=None,
                         help="who, shown by `status` (default: user@host)")
    resume = _command(
        commands, "resume",
        help="resume a suspended site: the agent reconciles it at once",
        description="Resume a suspended site: the agent runs a pass at once and applies "
                    "what the branch holds. " + where + "\n"
                    "Exit 0 when recorded, 1 when it cannot be written, 2 on a usage error.",
        epilog="examples:\n"
               "  reconciler resume --site edge-sfo-01\n",
    )
    site_flags(resume)


def _add_completion_command(commands: _Commands) -> None:
    """`completion SHELL`: a completion script made from this parser (completion.py)."""
    from reconciler import completion

    shell = _command(
        commands, "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description="Print a completion script for the shell: the commands, their flags and "
                    "the values of flags that have a fixed set (-o text|json|yaml). It is "
                    "static: pressing Tab never starts Python.",
        epilog="examples:\n"
               "  source <(reconciler completion bash)                  # in ~/.bashrc\n"
               "  reconciler completion bash > /etc/bash_completion.d/reconciler\n"
               "  reconciler completion zsh > \"${fpath[1]}/_reconciler\"\n"
               "  reconciler completion fish > ~/.config/fish/completions/reconciler.fish\n",
    )
    shell.add_argument("shell", choices=completion.SHELLS)


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        from reconciler.site import logs

        sites = getattr(args, "site", None)
        only = sites if isinstance(sites, str) else (
            sites[0] if isinstance(sites, list) and len(set(sites)) == 1 else None)
        handler.setFormatter(logs.JsonFormatter(default_site=only))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                               datefmt="%H:%M:%S"))
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Output cut short by its reader (`reconciler status | head -1`)
    ends quietly, as a command a SIGPIPE killed: exit 141, nothing on stderr."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not at exit
        return code
    except BrokenPipeError:
        # The recipe of the Python docs (signal module, "Note on SIGPIPE"): point stdout
        # at /dev/null so the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # SIGPIPE, as a shell reports it


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args)
    try:
        return _COMMANDS[args.command](args)
    except errors.UsageError as exc:
        print(f"reconciler: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.ReconcilerError as exc:
        print(f"reconciler: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _options(args: argparse.Namespace, site: str, *, cache_dir: Path | None = None) -> Any:
    from reconciler.site import pipeline

    cache_dir = cache_dir or args.cache_dir or args.state_dir / contract.CACHE_DIR_NAME
    return pipeline.Options(url=args.repo, site=site, branch=args.branch,
                            cache_dir=cache_dir,
                            allow_history_rewrite=args.allow_history_rewrite,
                            limits=_limits(args), adopt=args.adopt, access=_access(args),
                            max_prune_fraction=args.max_prune_fraction, trust=_trust(args),
                            policy=_policy(args),
                            write_deadline=cluster.write_deadline(args.request_timeout))


def _state_namespace(args: argparse.Namespace) -> str:
    from reconciler import kube
    from reconciler.site import kubestate

    return args.state_namespace or kubestate.default_namespace(
        str(kube.service_account_dir() / "namespace"))


def _store(args: argparse.Namespace, site: str, target: Any,
           guard: Callable[[], None] | None = None) -> state.StateStore:
    """The site's store as --state-store says: the file, or the ConfigMap."""
    if args.state_store == "kubernetes":
        from reconciler.site import kubestate

        return kubestate.KubeStateStore(target=target, namespace=_state_namespace(args),
                                        site=site, guard=guard)
    return state.FileStateStore(state_dir=args.state_dir, site=site)


@contextlib.contextmanager
def _site(args: argparse.Namespace,
          abort: Any = None) -> Iterator[tuple[Any, state.StateStore, Any]]:
    """What `sync` and `run` share: the options, the site's locked store, the cluster.
    With the kubernetes store the lock is the site's Lease, held for the pass; losing it
    sets `abort`."""
    from reconciler import kube
    from reconciler.site import lease as leases

    options = _options(args, args.site)
    holder = leases.identity()
    target = kube.connect(kubeconfig=args.kubeconfig, context=args.context,
                          force_conflicts=args.force_conflicts,
                          user_agent=f"intent-reconciler ({holder})",
                          request_timeout=args.request_timeout)
    try:
        if args.state_store == "kubernetes":
            site_lease = leases.Lease(target=target, namespace=_state_namespace(args),
                                      site=args.site, holder=holder)
            store = _store(args, args.site, target, guard=site_lease.guard)
            lost = (lambda: abort.set("lost the site's lease")) if abort is not None \
                else (lambda: None)
            with leases.holding(site_lease, on_lost=lost):
                yield options, store, target
        else:
            store = _store(args, args.site, target)
            with store.lock():
                yield options, store, target
    finally:
        target.close()


def _cmd_sync(args: argparse.Namespace) -> int:
    from reconciler.site import abort as aborts
    from reconciler.site import pipeline

    stop = aborts.Abort()
    with _site(args, stop) as (options, store, target), _stop_on_signals(stop) as stopped_by:
        _refuse_suspended(_channel(args, options.site, target))
        result = pipeline.sync_once(options=options, store=store, target=target, abort=stop)
    _print(report.sync_json(result), args.output) if args.output != "text" \
        else print(report.sync_text(result))
    if stopped_by:
        return 128 + stopped_by[0]  # as a shell reports a command a signal ended
    return EXIT_OK if result.ok else EXIT_FAILED


_SYNC_STOP_BOUND = 4.0  # seconds from SIGTERM to exit, within the 5 s a container is given


@contextlib.contextmanager
def _stop_on_signals(stop: aborts.Abort) -> Iterator[list[int]]:
    """SIGTERM or SIGINT stops `sync` as they stop `run`: the abort signal ends the
    rollout's waits and closes its gate, and the pass records the rollout as interrupted,
    to resume on the next start. Installed explicitly because Python as PID 1 (a container
    without an init) gets no default action for SIGTERM. A pass still going after the
    bound (a fetch, an apply still unanswered) exits the process then, holding the site's
    lock, as after a crash; a second signal interrupts at once. Yields the signal that
    came, if one did."""
    import os
    import signal
    import threading

    came: list[int] = []
    finished = threading.Event()

    def deadline(signum: int) -> None:
        if finished.wait(_SYNC_STOP_BOUND):
            return
        log.warning("still running %.0fs after %s; exiting without finishing the pass (the "
                    "state on disk is the last one saved)", _SYNC_STOP_BOUND,
                    signal.Signals(signum).name)
        logging.shutdown()  # flush the log: os._exit skips the interpreter's own exit
        sys.stdout.flush()
        os._exit(128 + signum)

    def handle(signum: int, _frame: object) -> None:
        if came:  # the second signal: stop now
            raise KeyboardInterrupt
        came.append(signum)
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.shut_down()
        threading.Thread(target=deadline, args=(signum,), name="deadline", daemon=True).start()

    previous = {}
    if threading.current_thread() is threading.main_thread():  # else signals cannot be set
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
    try:
        yield came
    finally:
        finished.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _cmd_run(args: argparse.Namespace) -> int:
    from reconciler.site import agent

    if args.interval <= 0:
        raise errors.UsageError(f"--interval must be positive, not {args.interval}")
    if args.max_backoff <= 0:
        raise errors.UsageError(f"--max-backoff must be positive, not {args.max_backoff}")
    sites = list(dict.fromkeys(args.site))
    if args.state_store == "kubernetes" or len(sites) > 1:
        return _run_sites(args, sites)
    args.site = sites[0]
    with _site(args) as (options, store, target), \
            _reporting(args, sites, target) as reporting:
        site_agent = agent.Agent(options=options, store=store, target=target,
                                 interval=args.interval, watch_files=not args.no_file_watch,
                                 max_backoff=args.max_backoff, observer=reporting.observer,
                                 control_channel=_channel(args, options.site, target))
        reporting.runners.append(site_agent)
        return agent.run(agent=site_agent)


@dataclasses.dataclass
class _Reporting:
    """What `run` reports through: the pipeline's observer (metrics, probes, Events), and
    the runners a webhook triggers."""

    observer: Any
    runners: list[Any] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def _reporting(args: argparse.Namespace, sites: list[str], target: Any) -> Iterator[_Reporting]:
    """Start `run`'s Event recorder and, when asked, its metrics and webhook endpoints;
    stop them on the way out."""
    from reconciler.site import endpoints, events, metrics, observe, webhook
    from reconciler.site import lease as leases

    secret = _webhook_secret(args) if args.webhook_port is not None else b""
    namespace = _state_namespace(args)
    recorder = events.Recorder(
        target=target, instance=leases.identity(),
        regarding=events.state_object(namespace) if args.state_store == "kubernetes"
        else events.namespace_object(namespace))
    meter = metrics.Metrics()
    probes = metrics.Probes(expected=() if args.state_store == "kubernetes" else sites,
                            stuck_after=2 * args.git_timeout + 120)
    reporting = _Reporting(observer=observe.fanout([meter, probes, recorder]))
    served: dict[int, dict[str, endpoints.Route]] = {}
    if args.metrics_port is not None:
        served.setdefault(args.metrics_port, {}).update(
            metrics.routes(metrics=meter, probes=probes))
    if args.webhook_port is not None:
        def on_push() -> None:
            for runner in reporting.runners:
                runner.trigger()
        served.setdefault(args.webhook_port, {}).update(webhook.routes(
            options=webhook.Options(secret=secret, branch=args.branch), on_push=on_push,
            count=meter.count_webhook))
    with contextlib.ExitStack() as stack:
        recorder.start()
        stack.callback(recorder.stop)
        for port, routes in served.items():
            try:
                server = endpoints.Server(routes=routes, port=port, name=f"http-{port}")
            except OSError as exc:
                raise errors.ReconcilerError(f"cannot listen on port {port}: {exc}") from exc
            stack.callback(server.stop)
            server.start()
            log.info("serving %s on port %d", ", ".join(sorted(routes)), server.port)
        yield reporting


def _webhook_secret(args: argparse.Namespace) -> bytes:
    """--webhook-secret-file's content, else $RECONCILER_WEBHOOK_SECRET; a trailing
    newline is not part of it. Never echoed."""
    if args.webhook_secret_file is not None:
        path: Path = args.webhook_secret_file
        try:
            secret = path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise errors.UsageError(f"cannot read --webhook-secret-file "
                                    f"{args.webhook_secret_file}: {exc.strerror}") from exc
        where = str(args.webhook_secret_file)
    else:
        secret = os.environ.get("RECONCILER_WEBHOOK_SECRET", "").encode().rstrip(b"\r\n")
        where = "$RECONCILER_WEBHOOK_SECRET"
    if not secret:
        raise errors.UsageError(f"--webhook-port needs a secret: {where} is empty or unset "
                                "(--webhook-secret-file FILE, or $RECONCILER_WEBHOOK_SECRET)")
    return secret


def _run_sites(args: argparse.Namespace, sites: list[str]) -> int:
    """`run` with several sites, or with the kubernetes store: one worker per site in this
    process; with the kubernetes store each site runs only while this replica holds its
    Lease. With several sites each has its own Git cache, <cache-dir>/<site>."""
    from reconciler import kube
    from reconciler.site import agent
    from reconciler.site import lease as leases

    for site in sites:
        bundle.check_site_name(site)
    timing = leases.Timing(duration=args.lease_duration)
    timing.check()
    holder = leases.identity()
    target = kube.connect(kubeconfig=args.kubeconfig, context=args.context,
                          force_conflicts=args.force_conflicts,
                          user_agent=f"intent-reconciler ({holder})",
                          request_timeout=args.request_timeout)
    base = args.cache_dir or args.state_dir / contract.CACHE_DIR_NAME
    runners: list[agent.Runner] = []
    try:
        with contextlib.ExitStack() as locks:
            reporting = locks.enter_context(_reporting(args, sites, target))
            reporting.runners = runners
            for site in sites:
                options = _options(args, site,
                                   cache_dir=base / site if len(sites) > 1 else base)
                if args.state_store == "kubernetes":
                    site_lease = leases.Lease(target=target, namespace=_state_namespace(args),
                                              site=site, holder=holder,
                                              timing=timing)
                    runners.append(agent.Elected(site=site, lease=site_lease,
                                                 make_agent=functools.partial(
                                                     _agent, args, options, target,
                                                     guard=site_lease.guard,
                                                     observer=reporting.observer)))
                else:
                    locks.enter_context(_store(args, site, target).lock())
                    runners.append(_agent(args, options, target,
                                          observer=reporting.observer))
            return agent.run(agents=runners)
    finally:
        target.close()


def _agent(args: argparse.Namespace, options: Any, target: Any, *,
           guard: Callable[[], None] | None = None, observer: Any = None) -> Any:
    """One site's agent over a fresh store (it reads the state when it starts)."""
    from reconciler.site import agent

    return agent.Agent(options=options, store=_store(args, options.site, target, guard),
                       target=target, interval=args.interval,
                       max_backoff=args.max_backoff, watch_files=not args.no_file_watch,
                       control_channel=_channel(args, options.site, target),
                       **({"observer": observer} if observer is not None else {}))


def _cmd_status(args: argparse.Namespace) -> int:
    if args.state_store == "kubernetes":
        return _status_in_cluster(args)
    site = args.site
    if site is None:
        sites = state.sites_in(args.state_dir)
        if len(sites) != 1:
            known = ", ".join(sites) or "none"
            raise errors.UsageError(
                f"--site is required: {args.state_dir} holds state for {len(sites)} sites "
                f"({known})")
        site = sites[0]
    store = state.FileStateStore(state_dir=args.state_dir, site=site)
    if not store.path.exists():
        raise errors.UsageError(
            f"no state for site {site!r} in {args.state_dir} (has it been synced? sites "
            f"there: {', '.join(state.sites_in(args.state_dir)) or 'none'})")
    if args.watch:
        return _watch_status(store)
    current = _with_control(store.load(), _channel(args, site, None))
    return _print_status(current, args.output)


def _status_in_cluster(args: argparse.Namespace) -> int:
    """`status --state-store kubernetes`: the record from the site's state ConfigMap."""
    from reconciler import kube
    from reconciler.site import kubestate

    namespace = _state_namespace(args)
    target = kube.connect(kubeconfig=args.kubeconfig, context=args.context)
    try:
        site = args.site
        if site is None:
            sites = kubestate.sites_in(target=target, namespace=namespace)
            if len(sites) != 1:
                raise errors.UsageError(
                    f"--site is required: namespace {namespace} holds state for {len(sites)} "
                    f"sites ({', '.join(sites) or 'none'})")
            site = sites[0]
        store = kubestate.KubeStateStore(target=target, namespace=namespace, site=site)
        if not store.exists():
            raise errors.UsageError(
                f"no state for site {site!r} in {store.where} (has it been synced? sites "
                "there: "
                f"{', '.join(kubestate.sites_in(target=target, namespace=namespace)) or 'none'})")
        if args.watch:
            return _watch_status(store)
        current = _with_control(store.load(), _channel(args, site, target))
    finally:
        if not args.watch:
            target.close()
    return _print_status(current, args.output)


def _print_status(current: state.SiteState, output: str) -> int:
    """Print the status; exit 1 when the site's last sync or rollout failed (state.failing)."""
    if output == "text":
        print(report.status_text(current))
    else:
        _print(report.status_json(current), output)
    failing = state.failing(current)
    if failing is None:
        return EXIT_OK
    sys.stdout.flush()
    print(f"reconciler: site {current.site}: {failing}", file=sys.stderr)
    return EXIT_FAILED


def _print(json_text: str, output: str) -> None:
    """A result a renderer gave as JSON, printed as `-o json` or `-o yaml` asks: the same
    data either way."""
    if output != "yaml":
        print(json_text)
        return
    import io
    import json

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buffer = io.StringIO()
    yaml.dump(json.loads(json_text), buffer)
    print(buffer.getvalue(), end="")


def _channel(args: argparse.Namespace, site: str, target: Any) -> Any:
    """The site's control record (site/control.py), where --state-store keeps the state."""
    from reconciler.site import control

    if args.state_store == "kubernetes":
        return control.KubeChannel(target=target, namespace=_state_namespace(args), site=site)
    return control.FileChannel(state_dir=args.state_dir, site=site)


def _with_control(current: state.SiteState, channel: Any) -> state.SiteState:
    """The record with the suspension the control record holds now: the operator's last
    word, even before the agent has seen it (or when no agent runs)."""
    try:
        suspension = channel.read().suspended
    except errors.ReconcilerError as exc:
        log.warning("%s", exc)
        return current
    return state.suspend(current, suspension=suspension)


def _refuse_suspended(channel: Any) -> None:
    """`sync` of a suspended site: refused, saying by whom and how to resume."""
    suspension = channel.read().suspended
    if suspension is not None:
        why = f" ({suspension.reason})" if suspension.reason else ""
        raise errors.ReconcilerError(
            f"site {channel.site} is suspended by {suspension.by} since {suspension.at}{why}; "
            f"nothing was done: `reconciler resume --site {channel.site}` to resume it")


@contextlib.contextmanager
def _control_channels(args: argparse.Namespace) -> Iterator[list[Any]]:
    """The control records of every --site of reconcile, suspend, resume."""
    for site in args.site:
        bundle.check_site_name(site)
    target = None
    if args.state_store == "kubernetes":
        from reconciler import kube

        target = kube.connect(kubeconfig=args.kubeconfig, context=args.context)
    try:
        yield [_channel(args, site, target) for site in dict.fromkeys(args.site)]
    finally:
        if target is not None:
            target.close()


def _cmd_reconcile(args: argparse.Namespace) -> int:
    """`reconciler reconcile`: exit 0 when requested (with --wait: when the pass ended ok)."""
    from reconciler.site import control

    code = EXIT_OK
    with _control_channels(args) as channels:
        asked: list[tuple[Any, str]] = []
        for channel in channels:
            _refuse_suspended(channel)
            now = state.now()
            control.request(channel, now=now)
            print(f"site {channel.site}: reconcile requested at {now} ({channel.where})")
            asked.append((channel, now))
        if args.wait:
            sys.stdout.flush()
            for channel, now in asked:
                code = max(code, _wait_for_pass(args, channel, now))
    return code


def _wait_for_pass(args: argparse.Namespace, channel: Any, since: str) -> int:
    """Wait until a sync that started at or after `since` has ended; exit as it did."""
    import threading
    import time

    store = _store(args, channel.site, getattr(channel, "target", None))
    deadline = time.monotonic() + args.timeout
    tick = threading.Event()
    while time.monotonic() < deadline:
        current = store.load() if store.exists() else None
        sync = current.last_sync if current is not None else None
        if sync is not None and sync.finished_at is not None and sync.result != "running" \
                and state.parse_time(sync.started_at) >= state.parse_time(since):
            print(f"site {channel.site}: sync {sync.result}"
                  + (f": {sync.message}" if sync.message else ""))
            return EXIT_OK if sync.result == "ok" else EXIT_FAILED
        tick.wait(0.2)
    raise errors.ReconcilerError(
        f"site {channel.site}: no pass ended within {durations.format_seconds(args.timeout)} "
        "of the request: is `reconciler run` running for it, with this --state-dir or "
        "--state-store?")


def _cmd_suspend(args: argparse.Namespace) -> int:
    """`reconciler suspend`: exit 0 when recorded."""
    from reconciler.site import control

    with _control_channels(args) as channels:
        for channel in channels:
            recorded = control.suspend(channel, by=args.by or control.actor(),
                                       reason=args.reason, now=state.now())
            suspension = recorded.suspended
            assert suspension is not None
            why = f": {suspension.reason}" if suspension.reason else ""
            print(f"site {channel.site}: suspended by {suspension.by} at {suspension.at}{why}")
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    """`reconciler resume`: exit 0 when recorded."""
    from reconciler.site import control

    with _control_channels(args) as channels:
        for channel in channels:
            was = channel.read().suspended
            control.resume(channel)
            print(f"site {channel.site}: resumed" if was is not None
                  else f"site {channel.site}: was not suspended")
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace) -> int:
    """`reconciler completion SHELL`: exit 0 when printed."""
    from reconciler import completion

    print(completion.script(_completion_tree(build_parser()), shell=args.shell), end="")
    return EXIT_OK


def _completion_tree(parser: argparse.ArgumentParser, name: str = "reconciler",
                     help_text: str = "") -> Any:
    """The parser as completion.Command: flags, their choices, subcommands."""
    from reconciler import completion

    flags: list[completion.Flag] = []
    commands: list[completion.Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for sub_name, sub in action.choices.items():
                commands.append(_completion_tree(sub, sub_name, helps.get(sub_name, "")))
        elif action.option_strings:
            flags.append(completion.Flag(
                names=tuple(action.option_strings), takes_value=action.nargs != 0,
                choices=tuple(str(c) for c in action.choices or ()),
                path=action.type is Path,
                help=action.help if isinstance(action.help, str)
                and action.help != argparse.SUPPRESS else ""))
    return completion.Command(name=name, help=help_text, flags=tuple(flags),
                              commands=tuple(commands))


def _watch_status(store: state.StateStore) -> int:
    """Redraw the status every second until Ctrl-C; a corrupt read is shown, not fatal."""
    import datetime
    import threading

    tick = threading.Event()
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            try:
                body = report.status_text(store.load())
            except errors.StateError as exc:
                body = f"reconciler: error: {exc}"
            stamp = datetime.datetime.now().strftime("%H:%M:%S")
            print(f"{clear}Every 1s: reconciler status --site {store.site}    {stamp}\n")
            print(body, flush=True)
            if not clear:
                print("-" * 78, flush=True)
            tick.wait(1.0)
    except KeyboardInterrupt:
        return EXIT_OK


def _cmd_local_cluster(args: argparse.Namespace) -> int:
    from reconciler import localcluster

    if not args.insecure_serve_unauthenticated and not _loopback(args.host):
        raise errors.UsageError(
            f"--host {args.host} is not a loopback address: the local cluster has no "
            "authentication or authorization, so anyone who can reach it could read and "
            "write every object; pass --insecure-serve-unauthenticated to serve it there "
            "anyway")

    return localcluster.run(host=args.host, port=args.port, kubeconfig_out=args.kubeconfig_out,
                            request_log=args.request_log, ready_delay=args.ready_delay)


def _loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback
                               for a in found)


def _cmd_demo(args: argparse.Namespace) -> int:
    from reconciler import demo

    return demo.run(workdir=args.workdir, ready_delay=args.ready_delay, verbose=args.verbose)


def _cmd_validate(args: argparse.Namespace) -> int:
    """`reconciler validate`: exit 0 clean (warnings allowed), 1 on any error."""
    from reconciler.manager import render, validate

    report = validate.run(options=validate.Options(
        root=args.path, sites=tuple(args.site) if args.site else None, strict=args.strict,
        kube_version=args.kube_version, limits=_limits(args)))
    if args.output in ("json", "yaml"):
        _print(render.validate_json(report), args.output)
    else:
        renderer = {"text": render.validate_text, "github": render.validate_github}
        print(renderer[args.output](report))
    return EXIT_FAILED if report.errors else EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    """`reconciler plan`: exit 0 when the intent would be accepted or kept, else 1."""
    from reconciler import kube
    from reconciler.manager import plan, render

    options = plan.Options(url=args.repo, site=args.site, ref=args.ref,
                           state_dir=args.state_dir, cache_dir=args.cache_dir,
                           limits=_limits(args), access=_access(args), policy=_policy(args),
                           trust=_trust(args))
    target: kube.KubeCluster | None = None
    if args.kubeconfig is not None:
        target = kube.connect(kubeconfig=args.kubeconfig, context=args.context)
    try:
        result = plan.make(options=options, target=target)
    finally:
        if target is not None:
            target.close()
    _print(render.plan_json(result), args.output) if args.output != "text" \
        else print(render.plan_text(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_intent(args: argparse.Namespace) -> int:
    """`reconciler intent publish`: exit 0 when published (and pushed, when asked)."""
    from reconciler.manager import publish, render

    options = publish.Options(
        repo=args.repo, site=args.site, message=args.message, intent_id=args.intent_id,
        sequence=args.sequence, description=args.description, sign=args.sign, push=args.push,
        remote=args.remote, allow_dirty=args.allow_dirty, dry_run=args.dry_run,
        limits=_limits(args), access=_access(args),
    )
    def show(published: Any) -> None:
        if args.output == "text":
            print(render.publish_text(published))
        else:
            _print(render.publish_json(published), args.output)

    try:
        result = publish.publish(options=options)
    except publish.PushError as exc:  # committed but not pushed: report what was done, fail
        show(exc.published)
        raise
    show(result)
    return EXIT_OK


def _cmd_rbac(args: argparse.Namespace) -> int:
    """`reconciler rbac`: exit 0 when printed."""
    from reconciler.manager import rbac, render

    result = rbac.run(options=rbac.Options(
        root=args.path, sites=tuple(args.site), name=args.name, namespace=args.namespace,
        service_account=args.service_account, limits=_limits(args)))
    for kind in result.guessed:
        log.warning("%s: no CRD in the repository defines %s %s: its resource is guessed as "
                    "%r; check it against the cluster (kubectl api-resources)",
                    kind.first_seen, kind.api_version, kind.kind, kind.resource)
    print(render.rbac_json(result) if args.output == "json" else render.rbac_yaml(result))
    return EXIT_OK


_COMMANDS = {
    "sync": _cmd_sync,
    "run": _cmd_run,
    "status": _cmd_status,
    "local-cluster": _cmd_local_cluster,
    "demo": _cmd_demo,
    "validate": _cmd_validate,
    "plan": _cmd_plan,
    "intent": _cmd_intent,
    "rbac": _cmd_rbac,
    "reconcile": _cmd_reconcile,
    "suspend": _cmd_suspend,
    "resume": _cmd_resume,
    "completion": _cmd_completion,
}

