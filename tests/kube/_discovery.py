"""The discovery documents of a running real API server, as one JSON file. Called by
``python -m tests.kube discovery``, which writes reconciler/localcluster's data file.

It reads the legacy discovery (/api, /api/v1, /apis, /apis/<group>/<version>) the way
kubectl does, and keeps it whole: the group order and preferred versions of /apis, and
every APIResource of every served group version, subresources included.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from tests.kube import _binaries


def _get_json(url: str, *, token: str, context: ssl.SSLContext) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def capture(*, url: str, token: str, ca_file: Path) -> dict[str, Any]:
    """Every group version the server serves, with its resources, in /apis order."""
    context = ssl.create_default_context(cafile=str(ca_file))
    groups: list[dict[str, Any]] = []
    core = _get_json(f"{url}/api", token=token, context=context)
    listing = _get_json(f"{url}/apis", token=token, context=context)
    by_group: dict[str, list[str]] = {"": list(core["versions"])}
    preferred = {"": core["versions"][0]}
    for group in listing["groups"]:
        by_group[group["name"]] = [v["version"] for v in group["versions"]]
        preferred[group["name"]] = group["preferredVersion"]["version"]
    for name, versions in by_group.items():
        out_versions = []
        for version in versions:
            path = f"{url}/api/{version}" if not name else f"{url}/apis/{name}/{version}"
            document = _get_json(path, token=token, context=context)
            out_versions.append({"version": version, "resources": document["resources"]})
        groups.append({"name": name, "preferredVersion": preferred[name],
                       "versions": out_versions})
    return {
        "comment": [
            f"The discovery of kube-apiserver {_binaries.kubernetes_version()} as it serves "
            "by default (GA and default-on APIs), read from /api, /api/v1, /apis and "
            "/apis/<group>/<version> of the real server tests/kube builds.",
            "Made by `python -m tests.kube discovery > "
            "reconciler/localcluster/builtin-kinds-v1.37.json`; never edited by hand.",
        ],
        "kubernetes": _binaries.kubernetes_version(),
        "groups": groups,
    }
