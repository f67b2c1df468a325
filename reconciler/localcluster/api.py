"""The Kubernetes REST API over the store: routing, verbs, content negotiation, discovery.

Called by the HTTP handler in `server` once per request; it never touches sockets itself, except
that a watch answer hands back a `WatchStream` for the handler to drain.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ruamel import yaml as ruamel_yaml
from ruamel.yaml import error as yaml_error

from reconciler import contract, durations
from reconciler.localcluster import (
    kinds,
    openapi,
    protobuf,
    resources,
    selectors,
    statuses,
    store,
    tables,
)

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
HEALTH_PATHS = ("/healthz", "/readyz", "/livez")
DEFAULT_WATCH_TIMEOUT = 1800.0

PATCH_TYPES = {
    "application/apply-patch+yaml": store.PatchType.APPLY,
    "application/merge-patch+json": store.PatchType.MERGE,
    "application/strategic-merge-patch+json": store.PatchType.STRATEGIC,
    "application/json-patch+json": store.PatchType.JSON,
}


@dataclasses.dataclass(frozen=True)
class Request:
    """An HTTP request, already read off the socket."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @classmethod
    def of(cls, *, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Request:
        """Split the request target into path and query."""
        parsed = urllib.parse.urlsplit(target)
        return cls(
            method=method.upper(),
            path=urllib.parse.unquote(parsed.path) or "/",
            query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )

    def param(self, name: str, default: str = "") -> str:
        """The last value of a query parameter."""
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        """A boolean query parameter, parsed as Go's strconv.ParseBool does."""
        return self.param(name) in _TRUE

    @property
    def content_type(self) -> str:
        """The media type of the body, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclasses.dataclass(frozen=True)
class Route:
    """A resource URL: /api/v1/namespaces/ns/configmaps/name/status and its kin."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str
    subresource: str
    watch_path: bool


@dataclasses.dataclass(frozen=True)
class Target:
    """What a request is about, for the request log and fault matching."""

    verb: str
    patch_type: str | None
    kind: str | None
    namespace: str | None
    name: str | None
    intent_id: str | None
    dry_run: bool
    route: Route | None
    rtype: resources.ResourceType | None


@dataclasses.dataclass(frozen=True)
class WatchStream:
    """An open watch for the handler to stream until it ends, times out or the server stops."""

    watcher: store.Watcher
    timeout: float
    transform: Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Response:
    """An answer: code, headers and a body (or a watch to stream)."""

    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    watch: WatchStream | None = None


def json_response(code: int, body: Any, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A JSON answer."""
    return Response(code=code, body=json.dumps(body).encode(), headers=tuple(headers))


def error_response(error: statuses.ApiError) -> Response:
    """A Status answer for an error."""
    return json_response(error.code, error.body(), tuple(error.headers.items()))


def text_not_found() -> Response:
    """What the Go mux answers for a path nobody serves."""
    return Response(
        code=404, body=b"404 page not found\n", content_type="text/plain; charset=utf-8"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat().replace("+00:00", "Z")
    return value


WRITE_DEADLINE = 34.0  # seconds: kube-apiserver's upper bound for a create/update/patch/delete
READ_DEADLINE = 60.0  # seconds: its --request-timeout default, for every other short request
_WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def deadline(request: Request, target: Target) -> float:
    """Seconds after arrival the server gives up on a request: the `timeout` query
    parameter when it is shorter than the bound (as kube-apiserver's WithRequestDeadline
    and its write handlers decide it), else the bound."""
    bound = WRITE_DEADLINE if target.verb in _WRITES else READ_DEADLINE
    asked = (request.query.get("timeout") or [""])[0]
    try:
        seconds = durations.parse(asked) if asked else 0.0
    except ValueError:
        seconds = 0.0
    return seconds if 0 < seconds < bound else bound


def parse_body(request: Request) -> Any:
    """The body as JSON-like data, decoded by its content type; 400/415 when it cannot be."""
    if not request.body.strip():
        return None
    content_type = request.content_type
    if content_type == protobuf.CONTENT_TYPE:
        return protobuf.decode(request.body)
    if "protobuf" in content_type or "cbor" in content_type:
        raise statuses.unsupported_media_type(["application/json", "application/yaml"])
    text = request.body.decode("utf-8", errors="replace")
    if content_type.endswith("yaml"):
        try:
            loader = ruamel_yaml.YAML(typ="safe", pure=True)
            loader.version = (1, 1)  # as sigs.k8s.io/yaml reads it: `yes` and `on` are booleans
            return _jsonable(loader.load(io.StringIO(text)))
        except yaml_error.YAMLError as exc:
            raise statuses.bad_request(f"error decoding YAML: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise statuses.bad_request(
            f"couldn't get version/kind; json parse error: {exc.msg}"
        ) from exc


def intent_of(body: Any) -> str | None:
    """The reconciler.dev/intent-id annotation of a request body, if it carries one."""
    if not isinstance(body, dict):
        return None
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(contract.ANNOTATION_INTENT_ID) if isinstance(annotations, dict) \
        else None
    return value if isinstance(value, str) else None


def parse_route(path: str) -> Route | None:
    """A resource route, or None for anything else."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and not (
        group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    return Route(group=group, version=version, plural=plural, namespace=namespace, name=name,
                 subresource=subresource, watch_path=watch_path)


class Api:
    """Answers requests against one store."""

    def __init__(self, *, data: store.Store, server_address: Callable[[], str],
                 clock: Callable[[], float] = time.time,  # injected by tests
                 unavailable: Callable[[], Mapping[str, str]] = dict) -> None:
        self.store = data
        self._server_address = server_address
        self._clock = clock
        # Group versions listed in discovery but answered with 503 (faults.FaultSet.
        # unavailable): group version -> the text of the answer.
        self._unavailable = unavailable

    # ---- classification --------------------------------------------------------------------

    def classify(self, request: Request) -> tuple[Target, Any, statuses.ApiError | None]:
        """What the request is about, its parsed body, and a body error to answer with."""
        route = parse_route(request.path)
        rtype = None
        if route is not None:
            rtype = self.store.registry.lookup(group=route.group, version=route.version,
                                               plural=route.plural)
        body: Any = None
        body_error = None
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                body = parse_body(request)
            except statuses.ApiError as exc:
                body_error = exc
        verb = self._verb(request, route)
        patch_type = None
        if request.method == "PATCH":
            known = PATCH_TYPES.get(request.content_type)
            patch_type = known.value if known is not None else None
        namespace = name = None
        if route is not None:
            namespace = route.namespace or None
            name = route.name or None
            if rtype is not None and rtype.kind == "Namespace" and route.name:
                namespace = None
        dry_run = "All" in request.query.get("dryRun", [])
        if request.method == "DELETE" and isinstance(body, dict):
            dry_run = dry_run or "All" in (body.get("dryRun") or [])
        target = Target(
            verb=verb,
            patch_type=patch_type,
            kind=rtype.kind if rtype is not None else None,
            namespace=namespace,
            name=name,
            intent_id=intent_of(body),
            dry_run=dry_run,
            route=route,
            rtype=rtype,
        )
        return target, body, body_error

    @staticmethod
    def _verb(request: Request, route: Route | None) -> str:
        if route is None:
            return request.method.lower() if request.method != "GET" else "get"
        named = bool(route.name)
        if request.method in ("GET", "HEAD"):
            if named and not route.watch_path:
                return "get"
            watching = route.watch_path or request.flag("watch")
            return "watch" if watching else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if named else "deletecollection",
        }.get(request.method, request.method.lower())

    # ---- dispatch --------------------------------------------------------------------------

    def handle(self, request: Request, target: Target, body: Any,
               body_error: statuses.ApiError | None) -> Response:
        """Answer one request."""
        try:
            down = self._unavailable_answer(request.path)
            if down is not None:
                return down
            if target.route is None:
                return self._non_resource(request)
            if body_error is not None:
                raise body_error
            return self._resource(request, target, body)
        except statuses.ApiError as exc:
            return error_response(exc)

    def _unavailable_answer(self, path: str) -> Response | None:
        """The aggregator's answer for a path under an unavailable group version: 503 with
        a line of plain text, not a Status. None for any other path."""
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or parts[0] != "apis":
            return None
        message = self._unavailable().get(f"{parts[1]}/{parts[2]}")
        if message is None:
            return None
        return Response(code=503, body=f"{message}\n".encode(),
                        content_type="text/plain; charset=utf-8")

    def _non_resource(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if request.method not in ("GET", "HEAD"):
            if path in ("/api", "/apis", "/version") or path.startswith(("/api/", "/apis/")):
                raise statuses.method_not_allowed()
            return text_not_found()
        if path == "/version":
            return json_response(200, resources.version_info())
        if path in HEALTH_PATHS or path.startswith(tuple(p + "/" for p in HEALTH_PATHS)):
            return Response(code=200, body=b"ok", content_type="text/plain; charset=utf-8")
        registry = self.store.registry
        if path == "/api":
            return json_response(200, resources.core_versions(
                server_address=self._server_address()))
        if path == "/api/v1":
            return json_response(200, resources.resource_list(registry, group="", version="v1"))
        if path == "/apis":
            return json_response(200, resources.group_list(registry, self._unavailable()))
        if path == "/openapi/v2":
            return Response(code=200, body=openapi.SWAGGER_PROTOBUF,
                            content_type=openapi.SWAGGER_CONTENT_TYPE)
        if path == "/openapi/v3":
            return json_response(200, openapi.index(registry))
        if path.startswith("/openapi/v3/"):
            gv = path[len("/openapi/v3/"):].split("/")
            group, version = ("", gv[1]) if gv[0] == "api" and len(gv) == 2 else (
                (gv[1], gv[2]) if gv[0] == "apis" and len(gv) == 3 else ("", ""))
            doc = openapi.group_version(registry, group=group, version=version) if version \
                else None
            return json_response(200, doc) if doc else text_not_found()
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis":
            found = resources.group(registry, parts[1], self._unavailable())
            return json_response(200, found) if found else text_not_found()
        if len(parts) == 3 and parts[0] == "apis" and registry.serves(group=parts[1],
                                                                       version=parts[2]):
            return json_response(200, resources.resource_list(registry, group=parts[1],
                                                              version=parts[2]))
        return text_not_found()

    def _resource(self, request: Request, target: Target, body: Any) -> Response:
        route = target.route
        assert route is not None
        registry = self.store.registry
        rtype = target.rtype
        if rtype is None:
            if registry.serves(group=route.group, version=route.version):
                raise statuses.resource_not_found()
            return text_not_found()
        if route.namespace and not rtype.namespaced:
            raise statuses.resource_not_found()
        if rtype.namespaced and route.name and not route.namespace:
            raise statuses.resource_not_found()
        if route.subresource and (route.subresource != "status" or not rtype.has_status):
            raise statuses.resource_not_found()
        if route.subresource and target.verb not in ("get", "update", "patch"):
            raise statuses.method_not_allowed()
        dry_run_values = request.query.get("dryRun", [])
        for value in dry_run_values:
            if value != "All":
                raise statuses.bad_request(f'Invalid dry run value: "{value}"')
        field_validation = request.param("fieldValidation")
        manager = request.param("fieldManager") or _manager_from(request.headers)
        verb = target.verb
        namespace = route.namespace
        name = route.name
        accept = request.headers.get("accept", "")
        if verb == "get":
            obj = self.store.get(rtype=rtype, namespace=namespace, name=name)
            return self._render(accept, rtype, [obj], single=True, request=request)
        if verb in ("list", "watch", "deletecollection"):
            labels = selectors.parse_labels(request.param("labelSelector"))
            fields = selectors.parse_fields(request.param("fieldSelector"),
                                            supported=_field_names(rtype))
            if verb == "list":
                listing = self.store.list(rtype=rtype, namespace=namespace, labels=labels,
                                          fields=fields, limit=_int(request.param("limit")),
                                          continue_token=request.param("continue"))
                return self._render(accept, rtype, listing["items"], single=False,
                                    request=request, listing=listing)
            if verb == "watch":
                return self._watch(request, rtype, namespace, labels, fields)
            if rtype.kind == "Namespace":
                raise statuses.method_not_allowed()
            result = self.store.delete_collection(rtype=rtype, namespace=namespace, labels=labels,
                                                  fields=fields, dry_run=target.dry_run)
            return json_response(result.code, result.body)
        if verb == "create":
            if name:
                raise statuses.method_not_allowed()
            result = self.store.create(rtype=rtype, namespace=namespace, body=body,
                                       manager=manager, dry_run=target.dry_run,
                                       field_validation=field_validation)
        elif verb == "update":
            result = self.store.update(rtype=rtype, namespace=namespace, name=name, body=body,
                                       subresource=route.subresource, manager=manager,
                                       dry_run=target.dry_run, field_validation=field_validation)
        elif verb == "patch":
            result = self._patch(request, target, rtype, body, manager, field_validation)
        elif verb == "delete":
            options = body if isinstance(body, dict) else {}
            result = self.store.delete(rtype=rtype, namespace=namespace, name=name,
                                       options=options, dry_run=target.dry_run)
        else:
            raise statuses.method_not_allowed()
        headers = tuple(("Warning", f'299 - "{w}"') for w in result.warnings)
        return json_response(result.code, result.body, headers)

    def _patch(self, request: Request, target: Target, rtype: resources.ResourceType, body: Any,
               manager: str, field_validation: str) -> store.WriteResult:
        route = target.route
        assert route is not None
        patch_type = PATCH_TYPES.get(request.content_type)
        accepted = ["application/json-patch+json", "application/merge-patch+json"]
        if not rtype.custom:
            accepted.append("application/strategic-merge-patch+json")
        accepted.append("application/apply-patch+yaml")
        if patch_type is None or (rtype.custom and patch_type is store.PatchType.STRATEGIC):
            raise statuses.unsupported_media_type(accepted)
        apply = patch_type is store.PatchType.APPLY
        causes = []
        if apply and not request.param("fieldManager"):
            causes.append(statuses.Cause(type="FieldValueRequired",
                                         message="Required value: is required for apply patch",
                                         field="fieldManager"))
        if not apply and "force" in request.query:
            causes.append(statuses.Cause(type="FieldValueForbidden",
                                         message="Forbidden: may not be specified for non-apply "
                                         "patch", field="force"))
        if causes:
            raise statuses.invalid(kind="PatchOptions", group="meta.k8s.io", name="",
                                   causes=causes)
        if body is None:
            raise statuses.bad_request("the body of the request was empty")
        return self.store.patch(rtype=rtype, namespace=route.namespace, name=route.name,
                                body=body, patch_type=patch_type, subresource=route.subresource,
                                manager=manager, force=request.flag("force"),
                                dry_run=target.dry_run, field_validation=field_validation)

    def _watch(self, request: Request, rtype: resources.ResourceType, namespace: str,
               labels: selectors.Selector, fields: selectors.FieldSelector) -> Response:
        timeout = DEFAULT_WATCH_TIMEOUT
        if request.param("timeoutSeconds"):
            timeout = float(_int(request.param("timeoutSeconds")))
        send_initial = request.flag("sendInitialEvents")
        if send_initial and request.param("resourceVersionMatch") != "NotOlderThan":
            raise statuses.invalid(kind="ListOptions", group="meta.k8s.io", name="", causes=[
                statuses.Cause(type="FieldValueForbidden",
                               message="Forbidden: sendInitialEvents requires setting "
                               "resourceVersionMatch to NotOlderThan",
                               field="sendInitialEvents")])
        watcher = self.store.watch(rtype=rtype, namespace=namespace, labels=labels,
                                   fields=fields, resource_version=request.param("resourceVersion"),
                                   send_initial_events=send_initial,
                                   bookmarks=request.flag("allowWatchBookmarks"))
        as_table = "as=Table" in request.headers.get("accept", "")

        def transform(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
            if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = tables.table(rtype, [obj], resource_version=obj["metadata"].get(
                    "resourceVersion", ""), now=self._clock(),
                    include_object=request.param("includeObject", "Metadata"))
            return {"type": kind, "object": obj}

        return Response(code=200, watch=WatchStream(watcher=watcher, timeout=timeout,
                                                    transform=transform))

    def _render(self, accept: str, rtype: resources.ResourceType, items: list[dict[str, Any]], *,
                single: bool, request: Request, listing: dict[str, Any] | None = None) -> Response:
        if "as=Table" in accept:
            rv = items[0]["metadata"].get("resourceVersion", "") if single else \
                (listing or {}).get("metadata", {}).get("resourceVersion", "")
            body = tables.table(rtype, items, resource_version=rv, now=self._clock(),
                                include_object=request.param("includeObject", "Metadata"))
            if listing is not None and listing["metadata"].get("continue"):
                body["metadata"]["continue"] = listing["metadata"]["continue"]
            return json_response(200, body)
        if "as=PartialObjectMetadata" in accept:
            partial = [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": item.get("metadata", {})} for item in items]
            if single:
                return json_response(200, partial[0])
            return json_response(200, {"kind": "PartialObjectMetadataList",
                                       "apiVersion": "meta.k8s.io/v1",
                                       "metadata": (listing or {}).get("metadata", {}),
                                       "items": partial})
        return json_response(200, items[0] if single else listing)


def _int(text: str) -> int:
    try:
        return int(text) if text else 0
    except ValueError as exc:
        raise statuses.bad_request(f"invalid integer parameter: {text}") from exc


def _field_names(rtype: resources.ResourceType) -> tuple[str, ...]:
    return kinds.field_names(rtype)


def _manager_from(headers: Mapping[str, str]) -> str:
    """The default field manager: the user agent up to its first `/`, as the apiserver does."""
    agent = headers.get("user-agent", "")
    prefix = agent.split("/", 1)[0].strip()
    return (prefix or "unknown")[:128]
