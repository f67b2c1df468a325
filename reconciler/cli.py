"""The `reconciler` command line: parse flags, run one command, map errors to exit codes.

Exit codes: 0 ok, 1 failed (refused intent, fetch/parse/apply error), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler import __version__, contract, durations, errors
from reconciler.repo import bundle
from reconciler.site import report, state

log = logging.getLogger("reconciler")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _duration(text: str) -> float:
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


# What add_subparsers() returns; generic for type checkers only, so a string at run time.
_Commands: typing.TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _command(commands: _Commands, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that takes -v and -q after its name too (SUPPRESS keeps a flag given
    before it), with the help layout every command shares."""
    logging_flags = argparse.ArgumentParser(add_help=False)
    _add_log_flags(logging_flags, default=argparse.SUPPRESS)
    kwargs.setdefault("formatter_class", _Formatter)
    return commands.add_parser(name, parents=[logging_flags], **kwargs)


def _add_sync_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, metavar="URL",
                        help="Git repository: a path, file://, git://, http(s):// or ssh:// URL")
    parser.add_argument("--site", required=True, help="the site to reconcile (sites/<SITE>/)")
    parser.add_argument("--branch", default=contract.DEFAULT_BRANCH,
                        help="branch to follow (default: %(default)s)")
    parser.add_argument("--state-dir", type=Path, default=contract.DEFAULT_STATE_DIR,
                        help="where <site>.json is kept (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Git cache that survives restarts (default: <state-dir>/.git-cache)")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("--allow-history-rewrite", action="store_true",
                        help="accept a new head that does not descend from the last fetched one")
    _add_limit_flags(parser)
    parser.add_argument("--force-conflicts", action="store_true",
                        help="take over fields another field manager owns (server-side apply)")


def _add_log_flags(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debug detail")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="log warnings and errors only")


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
               "  reconciler intent publish --site edge-sfo-01 -m 'UPF 2.4' --push\n",
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
    sync.add_argument("-o", "--output", choices=["text", "json"], default="text")

    run = _command(
        commands, "run",
        help="the long-running site agent: reconcile on a poll interval and on pushes",
        description="Fetch on a poll interval (with 10% jitter) and, for a local repository, "
                    "as soon as its refs change; roll the accepted intent out wave by wave; "
                    "abort a running rollout the moment a newer intent is accepted. SIGTERM "
                    "or SIGINT ends the wait in progress, records the state and exits 0.",
        epilog="examples:\n"
               "  reconciler run --repo https://git.example.com/fleet.git --site edge-sfo-01\n"
               "  reconciler run --repo /srv/git/fleet.git --site edge-sfo-01 --interval 5m\n",
    )
    _add_sync_flags(run)
    run.add_argument("--interval", type=_duration, default=30.0,
                     help="seconds between fetches (default: 30s; 30, 30s, 5m, 1h)")
    run.add_argument("--no-file-watch", action="store_true",
                     help="for a local repository, poll only: do not watch its refs")

    status = _command(
        commands, "status", help="show a site's accepted intent, last sync, "
        "drops, errors and history",
        epilog="examples:\n"
               "  reconciler status --site edge-sfo-01\n"
               "  reconciler status --state-dir /var/lib/reconciler --site edge-sfo-01 -o json\n"
               "  reconciler status --site edge-sfo-01 --watch\n",
    )
    status.add_argument("--state-dir", type=Path, default=contract.DEFAULT_STATE_DIR,
                        help="where <site>.json is kept (default: %(default)s)")
    status.add_argument("--site", default=None,
                        help="the site (default: the only site in the state dir)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")
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
    local.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    local.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    local.add_argument("--kubeconfig-out", type=Path, default=None,
                       help="write a kubeconfig for the cluster here")
    local.add_argument("--request-log", type=Path, default=None,
                       help="append one JSON line per API request served")
    local.add_argument("--ready-delay", type=_duration, default=2.0,
                       help="seconds the simulated controllers take to reach Ready "
                            "(default: 2s)")

    _add_manager_commands(commands)

    demo = _command(
        commands, "demo",
        help="the whole story on the embedded local cluster, in under a minute",
        description="Starts the local cluster, makes a Git repository from the sample, syncs "
                    "edge-sfo-01, lands a second intent in which one manifest still carries the "
                    "old id, syncs again, and shows what was accepted, applied and dropped.",
    )
    demo.add_argument("--workdir", type=Path, default=None,
                      help="keep the demo's repository and state here (default: a temp dir)")
    demo.add_argument("--ready-delay", type=_duration, default=1.0,
                      help="simulated controllers' delay to Ready (default: 1s)")
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
    check.add_argument("-o", "--output", choices=["text", "json", "github"], default="text")
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
    plan.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _add_limit_flags(plan)

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
    publish.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _add_limit_flags(publish)


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
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


@contextlib.contextmanager
def _site(args: argparse.Namespace) -> Iterator[tuple[Any, state.FileStateStore, Any]]:
    """What `sync` and `run` share: the options, the site's locked store, the cluster."""
    from reconciler import kube
    from reconciler.site import pipeline

    cache_dir = args.cache_dir or args.state_dir / contract.CACHE_DIR_NAME
    options = pipeline.Options(url=args.repo, site=args.site, branch=args.branch,
                                cache_dir=cache_dir,
                                allow_history_rewrite=args.allow_history_rewrite,
                                limits=_limits(args))
    store = state.FileStateStore(state_dir=args.state_dir, site=args.site)
    target = kube.connect(kubeconfig=args.kubeconfig, context=args.context,
                          force_conflicts=args.force_conflicts)
    try:
        with store.lock():
            yield options, store, target
    finally:
        target.close()


def _cmd_sync(args: argparse.Namespace) -> int:
    from reconciler.site import pipeline

    with _site(args) as (options, store, target):
        result = pipeline.sync_once(options=options, store=store, target=target)
    print(report.sync_json(result) if args.output == "json" else report.sync_text(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_run(args: argparse.Namespace) -> int:
    from reconciler.site import agent

    if args.interval <= 0:
        raise errors.UsageError(f"--interval must be positive, not {args.interval}")
    with _site(args) as (options, store, target):
        site_agent = agent.Agent(options=options, store=store, target=target,
                                 interval=args.interval, watch_files=not args.no_file_watch)
        return agent.run(agent=site_agent)


def _cmd_status(args: argparse.Namespace) -> int:
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
    current = store.load()
    print(report.status_json(current) if args.output == "json" else report.status_text(current))
    return EXIT_OK


def _watch_status(store: state.FileStateStore) -> int:
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

    return localcluster.run(host=args.host, port=args.port, kubeconfig_out=args.kubeconfig_out,
                            request_log=args.request_log, ready_delay=args.ready_delay)


def _cmd_demo(args: argparse.Namespace) -> int:
    from reconciler import demo

    return demo.run(workdir=args.workdir, ready_delay=args.ready_delay, verbose=args.verbose)


def _cmd_validate(args: argparse.Namespace) -> int:
    """`reconciler validate`: exit 0 clean (warnings allowed), 1 on any error."""
    from reconciler.manager import render, validate

    report = validate.run(options=validate.Options(
        root=args.path, sites=tuple(args.site) if args.site else None, strict=args.strict,
        kube_version=args.kube_version, limits=_limits(args)))
    renderer = {"text": render.validate_text, "json": render.validate_json,
                "github": render.validate_github}[args.output]
    print(renderer(report))
    return EXIT_FAILED if report.errors else EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    """`reconciler plan`: exit 0 when the intent would be accepted or kept, else 1."""
    from reconciler import kube
    from reconciler.manager import plan, render

    options = plan.Options(url=args.repo, site=args.site, ref=args.ref,
                           state_dir=args.state_dir, cache_dir=args.cache_dir,
                           limits=_limits(args))
    target: kube.KubeCluster | None = None
    if args.kubeconfig is not None:
        target = kube.connect(kubeconfig=args.kubeconfig, context=args.context)
    try:
        result = plan.make(options=options, target=target)
    finally:
        if target is not None:
            target.close()
    print(render.plan_json(result) if args.output == "json" else render.plan_text(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_intent(args: argparse.Namespace) -> int:
    """`reconciler intent publish`: exit 0 when published (and pushed, when asked)."""
    from reconciler.manager import publish, render

    options = publish.Options(
        repo=args.repo, site=args.site, message=args.message, intent_id=args.intent_id,
        sequence=args.sequence, description=args.description, sign=args.sign, push=args.push,
        remote=args.remote, allow_dirty=args.allow_dirty, dry_run=args.dry_run,
        limits=_limits(args),
    )
    renderer = render.publish_json if args.output == "json" else render.publish_text
    try:
        result = publish.publish(options=options)
    except publish.PushError as exc:  # committed but not pushed: report what was done, fail
        print(renderer(exc.published))
        raise
    print(renderer(result))
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
}

