"""Kubeconfig files that point kubectl and the kubernetes client at the local cluster.

Called by `LocalCluster.write_kubeconfig()` and the `run()` command.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKEN = "local-admin"


def render(*, server: str, context: str, token: str = TOKEN) -> str:
    """The kubeconfig text: one cluster, one token user, one context, set as current."""
    q = json.dumps  # JSON strings are valid YAML scalars
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {q(context)}\n"
        "  cluster:\n"
        f"    server: {q(server)}\n"
        "users:\n"
        f"- name: {q(context + '-admin')}\n"
        "  user:\n"
        f"    token: {q(token)}\n"
        "contexts:\n"
        f"- name: {q(context)}\n"
        "  context:\n"
        f"    cluster: {q(context)}\n"
        f"    user: {q(context + '-admin')}\n"
        "    namespace: default\n"
        f"current-context: {q(context)}\n"
        "preferences: {}\n"
    )


def write(path: Path, *, server: str, context: str, token: str = TOKEN) -> Path:
    """Write a kubeconfig file (mode 0600, folder created); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(server=server, context=context, token=token), encoding="utf-8")
    path.chmod(0o600)
    return path
