"""The real Cluster adapter: the official `kubernetes` client, server-side apply.

The only module of the reconciler that imports the client. HTTP errors are mapped here,
once, to errors.ClusterError and its kinds, each saying whether a retry can help.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import ssl
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3

from reconciler import cluster, contract, errors, kubekinds

log = logging.getLogger("reconciler.kube")

CONNECT_TIMEOUT = 5.0  # seconds
READ_RETRIES = 5  # tries of a read the server answers 429 with a short Retry-After
READ_RETRY_WAIT = 5.0  # seconds: a longer Retry-After is the caller's to honour
REQUEST_TIMEOUT = 30.0  # seconds the client waits for an answer (`--request-timeout`)


_ECHOED_VALUE = re.compile(r'(Invalid value: )("(?:[^"\\]|\\.)*"|\S+)')


def _segment(text: str) -> str:
    """One URL path segment: every reserved character escaped, `/` too, so no name can
    reach another path (names are validated before they get here; this is the last word)."""
    return urllib.parse.quote(text, safe="")


def _not_served(api_version: str, kind: str, *,
                served: Mapping[tuple[str, str], cluster.Resource] | None) -> str:
    """Why discovery has no such kind: a CRD not installed, or for a kind of Kubernetes'
    own groups, an API version this cluster does not serve (removed, or not enabled)."""
    group = api_version.rpartition("/")[0]
    text = f"the cluster does not serve kind {kind!r} in {api_version!r}"
    if not kubekinds.serves_itself(group):
        return f"{text} (is its CRD installed?)"
    others = sorted(gv for gv, k in served or {} if k == kind and gv.rpartition("/")[0] == group)
    if others:
        return f"{text} (it serves {kind} as {', '.join(repr(gv) for gv in others)})"
    return f"{text}, a Kubernetes API (is the API version enabled, or has Kubernetes removed it?)"


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_ACCOUNT_DIR_ENV = "RECONCILER_SERVICEACCOUNT_DIR"


def service_account_dir() -> Path:
    """Where the pod's service account is mounted (`token`, `ca.crt`, `namespace`):
    SERVICE_ACCOUNT_DIR, or $RECONCILER_SERVICEACCOUNT_DIR for tests and unusual mounts."""
    return Path(os.environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)


def connect(*, kubeconfig: Path | None = None, context: str | None = None,
            force_conflicts: bool = False, user_agent: str | None = None,
            request_timeout: float = REQUEST_TIMEOUT) -> KubeCluster:
    """A cluster from `--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, or in-cluster config.
    `user_agent` names the replica in the API server's audit log (`run` with leases).

    In-cluster (no kubeconfig, $KUBERNETES_SERVICE_HOST set, as in every pod) the server is
    https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, authenticated by the
    service account's token and verified by its `ca.crt` (service_account_dir()); the
    token is read again every minute, as the kubelet rotates a projected one."""
    if request_timeout < 1.5:
        raise errors.UsageError(
            f"--request-timeout {request_timeout:g}s is too short: at least 1.5s (writes ask "
            "the server to give up after two thirds of it, at least a whole second)")
    configuration = kubernetes.client.Configuration()
    # urllib3 sends a request again after a read error for DELETE and PUT by default: a
    # write the server may already be running, sent twice, the second copy after the
    # caller gave up on the first. Reads are re-sent; a write that fails after it was
    # sent is the rollout's to retry (with its abort check), never the transport's.
    # Connection errors (nothing sent) are retried for every method.
    configuration.retries = urllib3.Retry(
        total=3, connect=3, read=3, status=0, redirect=0, other=0, backoff_factor=0.1,
        allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False)
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG", "")
    default = Path.home() / ".kube" / "config"
    in_cluster = not path and not default.exists() and bool(
        os.environ.get("KUBERNETES_SERVICE_HOST"))
    account = service_account_dir()
    try:
        if in_cluster:
            kubernetes.config.incluster_config.InClusterConfigLoader(
                token_filename=str(account / "token"), cert_filename=str(account / "ca.crt"),
            ).load_and_set(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=path or str(default), context=context,
                client_configuration=configuration, persist_config=False,
            )
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as exc:
        if in_cluster:
            raise errors.UsageError(
                f"cannot load the in-cluster config (KUBERNETES_SERVICE_HOST and _PORT, the "
                f"service account's token and ca.crt in {account}): {exc}") from exc
        where = path or str(default)
        raise errors.UsageError(f"cannot load cluster config from {where}: {exc}") from exc
    return KubeCluster(kubernetes.client.ApiClient(configuration), force_conflicts=force_conflicts,
                       user_agent=user_agent, request_timeout=request_timeout)


class KubeCluster:
    """The Cluster port over a kubernetes ApiClient."""

    def __init__(self, api: kubernetes.client.ApiClient, *, force_conflicts: bool = False,
                 user_agent: str | None = None,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self._api = api
        self._timeout = (CONNECT_TIMEOUT, request_timeout)
        # Every write carries it (see cluster.write_deadline()): no late writes.
        self._write_deadline = ("timeout", f"{cluster.write_deadline(request_timeout)}s")
        if user_agent is not None:
            # The client's default header wins over a request's own User-Agent.
            api.user_agent = user_agent
        self._force_conflicts = force_conflicts
        self._lock = threading.Lock()
        self._resources: dict[tuple[str, str], cluster.Resource] | None = None
        # Group versions the cluster lists but could not serve at the last discovery (an
        # APIService whose backend is down): group version -> the server's reason.
        self._unavailable: dict[str, str] = {}
        self.server = api.configuration.host

    # --- HTTP ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                 body: Any = None, content_type: str = "application/json",
                 what: str = "") -> tuple[int, Any]:
        """One request; returns (status, decoded body). Transport errors are ClusterError.

        A read the server answers 429 with a short `Retry-After` is asked again after that
        wait, a few times, as client-go does: a list of a custom resource whose CRD was
        established a moment ago gets "storage is (re)initializing" until its watch cache
        is ready. Writes are never repeated here (the rollout retries them, with its abort
        check)."""
        for _ in range(READ_RETRIES):
            status, data = self._send(method, path, query=query, body=body,
                                      content_type=content_type, what=what)
            wait = getattr(data, "retry_after", None)
            if method != "GET" or status != 429 or wait is None or wait > READ_RETRY_WAIT:
                break
            threading.Event().wait(max(wait, 0.1))
        return status, data

    def _send(self, method: str, path: str, *, query: list[tuple[str, str]] | None,
              body: Any, content_type: str, what: str) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "User-Agent": "intent-reconciler"}
        if method != "GET":
            query = [*(query or []), self._write_deadline]
        if body is not None:
            headers["Content-Type"] = content_type  # the client encodes the dict as JSON
        method, url, headers, payload, _ = self._api.param_serialize(
            method=method, resource_path=path, query_params=query or [],
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(method, url, header_params=headers, body=payload,
                                          _request_timeout=self._timeout)
            raw = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3 wraps what ended its retries in MaxRetryError.reason (an exception).
            cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
            if isinstance(cause, urllib3.exceptions.SSLError | ssl.SSLError):
                raise errors.ClusterError(
                    f"{what or path}: TLS with the API server at {self.server} failed "
                    f"({_tls_problem(cause)}); check the kubeconfig's certificate authority "
                    "and server address", retryable=False) from exc
            raise errors.ClusterError(
                f"{what or path}: cannot reach the API server at {self.server}: "
                f"{type(exc).__name__}", retryable=True,
            ) from exc
        except kubernetes.client.ApiException as exc:
            # The client raises this without an answer from the server: for a TLS failure
            # (a certificate that does not verify: no retry helps) or a request it could not
            # prepare.
            tls = isinstance(exc.__context__, urllib3.exceptions.SSLError)
            # from None: the cause would carry the response body, where the server echoes
            # rejected values back (a Secret's data, say).
            raise errors.ClusterError(f"{what or path}: {exc.reason}",
                                      retryable=not tls) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            # Not JSON: the first line of the text, e.g. the aggregator's plain
            # `service unavailable`. _fail() never puts it in a message (it may be a proxy's
            # page); discovery names it as the reason a group version is unavailable.
            data = raw.decode("utf-8", "replace").strip().partition("\n")[0][:200] or None
        if response.status in (429, 503):  # _fail() keeps the wait it asks for
            data = _with_retry_after(data, response.getheader("Retry-After"))
        return response.status, data

    @staticmethod
    def _fail(status: int, data: Any, *, what: str, action: str,
              manager: str | None = None) -> errors.ClusterError:
        """The error for a non-2xx answer; `data` is its decoded body, a Status when the
        API server sent one: its message, reason, details and causes are kept. `manager`:
        the field manager an apply was sent as, named in a conflict's message."""
        body: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        message = _text(body.get("message"))
        reason = _text(body.get("reason"))
        details = body.get("details") if isinstance(body.get("details"), Mapping) else None
        causes = _causes(details)
        if what.startswith("Secret/"):
            # The server echoes rejected values back, in the message and in each cause;
            # a Secret's must never reach a log.
            message = _redact(message)
            causes = tuple(dataclasses.replace(c, message=_redact(c.message) or "")
                           for c in causes)
            if details is not None and "causes" in details:
                details = {**details, "causes": [
                    {k: _redact(v) if k == "message" and isinstance(v, str) else v
                     for k, v in cause.items()} if isinstance(cause, Mapping) else cause
                    for cause in details["causes"] or []]}
        payload: dict[str, Any] = {"status": status, "reason": reason, "details": details,
                                   "causes": causes}
        text = f"{what} {action} failed: {message or f'HTTP {status}'}"
        if status == 404:
            return errors.NotFoundError(text, **payload)
        if status == 403:
            return _forbidden(text, action=action, **payload)
        if status == 409 and action == "apply":
            managers = _conflicting_managers(causes)
            sites = _other_sites(managers, mine=manager)
            applying = f"applying as {manager!r}; " if manager else ""
            if sites:
                hint = (f"{applying}another site's field manager ({', '.join(sites)}) owns "
                        "these fields: two sites claim this object; remove it from one of "
                        "them (--force-conflicts never takes another site's fields)")
            else:
                hint = (f"{applying}another field manager owns these fields; "
                        "--force-conflicts takes them")
            return errors.ConflictError(f"{text} ({hint})", managers=managers, **payload)
        retryable = status in (408, 429) or status >= 500 or reason == "ServerTimeout"
        if message and message.startswith("failed to create typed patch object"):
            # The applied manifest does not fit the CRD's schema (an undeclared field, a
            # wrong type): a 500 that no retry heals.
            retryable = False
            text += " (the manifest does not match its CRD's schema)"
        kind = errors.ApplyError if action == "apply" else errors.ClusterError
        return kind(text, retryable=retryable, retry_after=getattr(data, "retry_after", None),
                    **payload)

    # --- discovery ----------------------------------------------------------------------

    def _discover(self) -> tuple[dict[tuple[str, str], cluster.Resource], dict[str, str]]:
        """Every served kind, and the group versions listed but unavailable (with the
        server's reason). An unavailable one is skipped, as kubectl skips it: one broken
        aggregated API must not stop the reconciler from reaching every other kind."""
        found: dict[tuple[str, str], cluster.Resource] = {}
        unavailable: dict[str, str] = {}
        versions = ["v1"]
        status, groups = self._request("GET", "/apis", what="discovery")
        if status != 200:
            raise self._fail(status, groups, what="discovery of /apis", action="read")
        for group in groups.get("groups", []):
            for version in group.get("versions", []):
                versions.append(version["groupVersion"])
        for gv in versions:
            kinds, why = self._discover_version(gv)
            found.update(kinds)
            if why:
                unavailable[gv] = why
        return found, unavailable

    def _discover_version(self, gv: str) -> tuple[dict[tuple[str, str], cluster.Resource], str]:
        """The kinds one group version serves; or none and why its discovery document could
        not be read. A group version that went away since `/apis` listed it has neither."""
        path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        try:
            status, data = self._request("GET", path, what=f"discovery of {path}")
        except errors.ClusterError as exc:
            if not exc.retryable:
                raise  # TLS with the API server itself: nothing is reachable
            return {}, str(exc)  # a backend that hangs: a read timeout on this path only
        if status == 404:
            return {}, ""  # a group went away between the two calls
        if status != 200 or not isinstance(data, Mapping):
            if isinstance(data, Mapping):
                text = _text(data.get("message"))
            else:
                text = data if isinstance(data, str) else None
            why = f"HTTP {status}" + (f": {text}" if text else "")
            problem = self._apiservice_problem(gv)
            return {}, f"{why}; {problem}" if problem else why
        found: dict[tuple[str, str], cluster.Resource] = {}
        for item in data.get("resources", []):
            if "/" in item["name"]:
                continue  # subresources
            found[(gv, item["kind"])] = cluster.Resource(
                api_version=gv, kind=item["kind"], plural=item["name"],
                namespaced=bool(item.get("namespaced")),
            )
        return found, ""

    def _apiservice_problem(self, gv: str) -> str:
        """Why the APIService behind a group version is not Available, from its status
        condition (`ServiceNotFound: service/metrics-server in "kube-system" is not
        present`); empty when there is none, or it cannot be read."""
        group, _, version = gv.rpartition("/")
        if not group:
            return ""
        name = f"{version}.{group}"
        try:
            status, data = self._request(
                "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{_segment(name)}",
                what=f"APIService/{name}")
        except errors.ClusterError:
            return ""
        if status != 200 or not isinstance(data, Mapping):
            return ""
        conditions = (data.get("status") or {}).get("conditions") or []
        for condition in conditions:
            if (isinstance(condition, Mapping) and condition.get("type") == "Available"
                    and condition.get("status") != "True"):
                detail = ": ".join(filter(None, (_text(condition.get("reason")),
                                                 _text(condition.get("message")))))
                return f"APIService {name} not available" + (f": {detail}" if detail else "")
        return ""

    def refresh_discovery(self) -> None:
        with self._lock:
            self._resources = None

    def resource(self, *, api_version: str, kind: str) -> cluster.Resource:
        with self._lock:
            if self._resources is None:
                self._resources, self._unavailable = self._discover()
            found = self._resources.get((api_version, kind))
            if found is None and api_version in self._unavailable:
                # Its backend may be back: read that group version's document once more.
                kinds, why = self._discover_version(api_version)
                self._resources.update(kinds)
                self._unavailable.pop(api_version)
                if why:
                    self._unavailable[api_version] = why
                found = self._resources.get((api_version, kind))
            elif found is None:
                # A CRD applied moments ago may be served now: look once more.
                self._resources, self._unavailable = self._discover()
                found = self._resources.get((api_version, kind))
            why = self._unavailable.get(api_version, "")
        if found is None and why:
            raise errors.GroupUnavailableError(
                f"kind {kind!r} cannot be reached: the cluster lists {api_version} but "
                f"cannot serve it now: {why}", group_version=api_version, why=why,
            )
        if found is None:
            raise errors.NotFoundError(_not_served(api_version, kind, served=self._resources),
                                       retryable=True)
        return found

    def _path(self, res: cluster.Resource, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if res.api_version == "v1" else f"/apis/{res.api_version}"
        if res.namespaced and namespace:
            base += f"/namespaces/{_segment(namespace)}"
        base += f"/{res.plural}"
        return base + (f"/{_segment(name)}" if name else "")

    # --- verbs --------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any], *, force: bool = False,
              dry_run: bool = False,
              field_manager: str = contract.SHARED_FIELD_MANAGER) -> cluster.Applied:
        """Server-side apply as `field_manager`. With --force-conflicts an apply that
        conflicts is sent again forced, taking the fields from the managers named, unless
        one of them is another site's (`reconciler/<other>`, or the shared `reconciler`):
        a site never takes another site's fields, so that stays a ConflictError."""
        ref = cluster.ObjectRef.of(obj)
        res = self.resource(api_version=ref.api_version, kind=ref.kind)
        namespace = ref.namespace or ("default" if res.namespaced else None)
        body = dict(obj)
        if res.namespaced and not ref.namespace:
            body["metadata"] = {**body["metadata"], "namespace": namespace}
        elif not res.namespaced and ref.namespace:
            body["metadata"] = {k: v for k, v in body["metadata"].items() if k != "namespace"}
        query = [("fieldManager", field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        path = self._path(res, namespace, ref.name)
        status, data = self._request(
            "PATCH", path, query=query + ([("force", "true")] if force else []), body=body,
            content_type="application/apply-patch+yaml", what=str(ref),
        )
        if status == 409 and self._force_conflicts and not force:
            conflict = self._fail(status, data, what=str(ref), action="apply",
                                  manager=field_manager)
            managers = getattr(conflict, "managers", ())
            if not managers or _other_sites(managers, mine=field_manager):
                raise conflict
            log.warning("%s: --force-conflicts takes fields from %s", ref,
                        ", ".join(managers))
            status, data = self._request(
                "PATCH", path, query=[*query, ("force", "true")], body=body,
                content_type="application/apply-patch+yaml", what=str(ref),
            )
        if status not in (200, 201):
            raise self._fail(status, data, what=str(ref), action="apply",
                             manager=field_manager)
        meta = data.get("metadata", {})
        return cluster.Applied(
            ref=cluster.ObjectRef.of(data), created=status == 201,
            resource_version=meta.get("resourceVersion"), generation=meta.get("generation"),
            live=data,
        )

    def json_patch(self, ref: cluster.ObjectRef,
                   operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        res = self.resource(api_version=ref.api_version, kind=ref.kind)
        status, data = self._request(
            "PATCH", self._path(res, ref.namespace, ref.name), body=[dict(op) for op in operations],
            content_type="application/json-patch+json", what=str(ref))
        if status != 200:
            raise self._fail(status, data, what=str(ref), action="patch")
        result: dict[str, Any] = data
        return result

    def get(self, ref: cluster.ObjectRef) -> dict[str, Any] | None:
        res = self.resource(api_version=ref.api_version, kind=ref.kind)
        status, data = self._request("GET", self._path(res, ref.namespace, ref.name),
                                     what=str(ref))
        if status == 404:
            return None
        if status != 200:
            raise self._fail(status, data, what=str(ref), action="read")
        result: dict[str, Any] = data
        return result

    def list(self, *, api_version: str, kind: str, label_selector: str,
             namespace: str | None = None) -> list[dict[str, Any]]:
        res = self.resource(api_version=api_version, kind=kind)
        status, data = self._request(
            "GET", self._path(res, namespace), query=[("labelSelector", label_selector)],
            what=f"list {kind}",
        )
        if status != 200:
            raise self._fail(status, data, what=f"{kind} list", action="read")
        items: list[dict[str, Any]] = []
        for item in data.get("items", []):
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            items.append(item)
        return items

    def delete(self, ref: cluster.ObjectRef, *, foreground: bool = False) -> bool:
        res = self.resource(api_version=ref.api_version, kind=ref.kind)
        status, data = self._request(
            "DELETE", self._path(res, ref.namespace, ref.name),
            body={"kind": "DeleteOptions", "apiVersion": "v1",
                  "propagationPolicy": "Foreground" if foreground else "Background"},
            what=str(ref),
        )
        if status == 404:
            return False
        if status not in (200, 202):
            raise self._fail(status, data, what=str(ref), action="delete")
        return True

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._write("POST", obj, action="create", ok=(200, 201))

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._write("PUT", obj, action="update", ok=(200,))

    def _write(self, method: str, obj: Mapping[str, Any], *, action: str,
               ok: tuple[int, ...]) -> dict[str, Any]:
        """POST or PUT of a whole object; a 409 (AlreadyExists, or Conflict on a stale
        resourceVersion) is VersionConflictError: another writer came first."""
        ref = cluster.ObjectRef.of(obj)
        res = self.resource(api_version=ref.api_version, kind=ref.kind)
        path = self._path(res, ref.namespace, ref.name if method == "PUT" else None)
        status, data = self._request(method, path, body=dict(obj), what=str(ref))
        if status == 409:
            failed = self._fail(status, data, what=str(ref), action=action)
            raise errors.VersionConflictError(
                f"{failed} (another writer came first)", status=status,
                reason=failed.reason, details=failed.details, causes=failed.causes)
        if status not in ok:
            raise self._fail(status, data, what=str(ref), action=action)
        result: dict[str, Any] = data
        return result

    def record_event(self, event: cluster.Event) -> None:
        """A core v1 Event: POST the first time; then a merge patch of its count, last
        time and message (what client-go's recorder sends), or a POST again when it is
        gone (Events expire after an hour by default)."""
        path = f"/api/v1/namespaces/{_segment(event.namespace)}/events"
        what = f"Event/{event.namespace}/{event.name}"
        if event.count > 1:
            status, data = self._request(
                "PATCH", f"{path}/{_segment(event.name)}", what=what,
                body={"count": event.count, "lastTimestamp": event.last,
                      "message": event.message},
                content_type="application/merge-patch+json")
            if status == 200:
                return
            if status != 404:
                raise self._fail(status, data, what=what, action="patch")
        status, data = self._request("POST", path, body=_event_body(event), what=what)
        if status not in (200, 201):
            raise self._fail(status, data, what=what, action="create")

    def close(self) -> None:
        self._api.close()


def _event_body(event: cluster.Event) -> dict[str, Any]:
    """The core v1 Event for `event`, as client-go's recorder writes one."""
    regarding = event.regarding
    involved = {"apiVersion": regarding.api_version, "kind": regarding.kind,
                "name": regarding.name}
    if regarding.namespace:
        involved["namespace"] = regarding.namespace
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event.name, "namespace": event.namespace,
                     "labels": dict(event.labels)},
        "involvedObject": involved, "type": event.type, "reason": event.reason,
        "message": event.message, "count": event.count,
        "firstTimestamp": event.first, "lastTimestamp": event.last,
        "source": {"component": event.component,
                   **({"host": event.instance} if event.instance else {})},
        "reportingComponent": event.component, "reportingInstance": event.instance,
    }


def _tls_problem(error: BaseException) -> str:
    """What went wrong in a TLS handshake, from the ssl module's own error: its reason
    (`CERTIFICATE_VERIFY_FAILED`) and verification message, not the wrapper's text."""
    inner = error.args[0] if error.args and isinstance(error.args[0], ssl.SSLError) else error
    if isinstance(inner, ssl.SSLCertVerificationError):
        return f"{inner.reason}: {inner.verify_message}"
    if isinstance(inner, ssl.SSLError) and inner.reason:
        return str(inner.reason)
    return type(inner).__name__


class _Answer(dict[str, Any]):
    """A 429's or 503's decoded body, with the seconds its Retry-After header asks for."""

    retry_after: float | None = None


def _with_retry_after(data: Any, header: str | None) -> Any:
    """`data` (a Status, or nothing) carrying `Retry-After` in seconds, its delta-seconds
    form (what the API server's priority and fairness sends); an HTTP date or garbage is
    ignored. A plain-text body stays as it is (discovery reads it; no wait is kept)."""
    try:
        seconds = float(int((header or "").strip()))
    except ValueError:
        return data
    if seconds < 0 or not (data is None or isinstance(data, Mapping)):
        return data
    answer = _Answer(data or {})
    answer.retry_after = seconds
    return answer


# --- permission errors ---------------------------------------------------------------------

# What each action of the adapter asks RBAC for. A server-side apply is a PATCH that
# creates the object when it does not exist yet, and the server then checks `create`.
_ACTION_VERBS = {"apply": ("create", "patch"), "delete": ("delete",), "create": ("create",),
                 "update": ("update",)}
# What the reconciler reads and writes for itself (deploy/'s Role and ClusterRole
# contract.OWN_ROLE): its Leases, and the Events it records. Everything else it touches
# is a site's object, granted by contract.SITE_CLUSTER_ROLE.
_OWN_RESOURCES = frozenset({("coordination.k8s.io", "leases"), ("", "events"),
                            ("events.k8s.io", "events")})


def _forbidden(text: str, *, action: str, status: int, reason: str | None,
               details: Mapping[str, Any] | None,
               causes: tuple[errors.Cause, ...]) -> errors.ForbiddenError:
    """The error for a 403: the verbs the request needed and the resource, from the
    Status's details (apimachinery's NewForbidden puts the resource's plural in
    `details.kind` and its group in `details.group`, absent for the core group), and the
    role that should grant them, with the command that prints a site's rules."""
    group = _text((details or {}).get("group")) or ""
    resource = _text((details or {}).get("kind"))
    name = _text((details or {}).get("name"))
    if action == "read":
        verbs: tuple[str, ...] = ("get",) if name else ("list",)
    else:
        verbs = _ACTION_VERBS.get(action, (action,))
    wanted = " and ".join(verbs)
    if resource is None:
        role = contract.SITE_CLUSTER_ROLE
        hint = (f"the reconciler's service account lacks a permission: widen the ClusterRole "
                f"{role} (`reconciler rbac --site SITE` prints the rules a site's manifests "
                "need)")
    else:
        shown = f"{resource}.{group}" if group else resource
        if (group, resource) in _OWN_RESOURCES:
            role = contract.OWN_ROLE
            hint = (f"the reconciler needs {wanted} on {shown} for its own work: grant it "
                    f"in the Role and ClusterRole {role} that deploy/ installs")
        else:
            role = contract.SITE_CLUSTER_ROLE
            where = f'API group "{group}"' if group else "the core API group"
            hint = (f"the reconciler needs {wanted} on {shown} ({where}): add "
                    f"{'it' if len(verbs) == 1 else 'them'} to the ClusterRole {role}; "
                    "`reconciler rbac --site SITE` prints every rule a site's manifests "
                    "need")
    return errors.ForbiddenError(f"{text} ({hint})", verbs=verbs, group=group,
                                 resource=resource, name=name, role=role, status=status,
                                 reason=reason, details=details, causes=causes)


# --- the Status payload -------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _redact(message: str | None) -> str | None:
    return _ECHOED_VALUE.sub(r"\1<redacted>", message) if message else message


def _causes(details: Mapping[str, Any] | None) -> tuple[errors.Cause, ...]:
    """`details.causes` of a Status. Each cause's `type` is its JSON `reason` (Go's
    StatusCause.Type is serialised as `reason`), e.g. FieldManagerConflict."""
    found = []
    for cause in (details or {}).get("causes") or []:
        if isinstance(cause, Mapping):
            found.append(errors.Cause(type=_text(cause.get("reason")),
                                      field=_text(cause.get("field")),
                                      message=_text(cause.get("message")) or ""))
    return tuple(found)


_CONFLICT_PREFIX = "conflict with "


def _other_sites(managers: tuple[str, ...], *, mine: str | None) -> tuple[str, ...]:
    """The managers that are another site's: `reconciler/<other>`, or the shared
    `reconciler` that every site applied as before it had its own."""
    return tuple(m for m in managers if m != mine and (
        m == contract.SHARED_FIELD_MANAGER or m.startswith(contract.FIELD_MANAGER_PREFIX)))


def _conflicting_managers(causes: tuple[errors.Cause, ...]) -> tuple[str, ...]:
    """The field managers named by an apply conflict's FieldManagerConflict causes, each
    once, in the server's order.

    The API server names the manager only in the cause's message, which its field manager
    (k8s.io/apimachinery, managedfields/internal/conflict.go, printManager) writes in one
    format: `conflict with ` then the name as Go's %q quotes it, then optionally
    ` with subresource "status"`, and ` using apps/v1` for an Update manager, e.g.
    `conflict with "kubectl-client-side-apply" using apps/v1`. (printManager can add
    ` at <time>`, but the manager identifier it prints has no time: kube-apiserver v1.37.2
    never sends it; the embedded local cluster does.) The quoted name is read as the
    quoted string it is (Go's %q of a printable name, as managers must be, is a JSON
    string), with plain string operations, never a regular expression. A cause in another
    format names no manager.
    """
    names: dict[str, None] = {}
    for cause in causes:
        if cause.type != "FieldManagerConflict":
            continue
        quoted = cause.message.removeprefix(_CONFLICT_PREFIX)
        if quoted == cause.message or not quoted.startswith('"'):
            continue
        try:
            name, _ = json.JSONDecoder().raw_decode(quoted)
        except ValueError:
            continue
        if isinstance(name, str) and name:
            names[name] = None
    return tuple(names)
