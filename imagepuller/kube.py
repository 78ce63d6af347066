"""The calls the puller makes to the Kubernetes API, by kind: the only module that names them.

Each kind's collection path, and per call its verb, query and body; sending, retrying,
mapping failures to :mod:`imagepuller.apierrors` and streaming watches are
:mod:`imagepuller.apitransport`'s. Objects travel as plain dicts (the JSON the API returns),
which keeps memory flat over many refresh cycles.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from imagepuller import objects
from imagepuller.apierrors import NotFound
from imagepuller.apitransport import CALL_TIMEOUT, ApiTransport
from imagepuller.objects import DaemonSet

OPENSHIFT_API_GROUP = "route.openshift.io"
# Read timeout on top of a watch's own server-side timeout: a dead connection cannot hang us.
_WATCH_READ_SLACK = 15.0
# Longest single watch: a connection that died silently (half-open through a NAT or load
# balancer) delivers nothing and fails nothing, so watches are renewed at least this often.
WATCH_MAX_SECONDS = 300


# Where each kind we write, list or watch lives: its name in messages, its collection's path.
DAEMONSETS = ("daemonsets.apps", "/apis/apps/v1/namespaces/{namespace}/daemonsets")
DEPLOYMENTS = ("deployments.apps", "/apis/apps/v1/namespaces/{namespace}/deployments")
PODS = ("pods", "/api/v1/namespaces/{namespace}/pods")
CORE_EVENTS = ("events", "/api/v1/namespaces/{namespace}/events")
CONFIGMAPS = ("configmaps", "/api/v1/namespaces/{namespace}/configmaps")
NODES = ("nodes", "/api/v1/nodes")
EVENTS_V1 = ("events.events.k8s.io", "/apis/events.k8s.io/v1/namespaces/{namespace}/events")
LEASES = (
    "leases.coordination.k8s.io",
    "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
)
PULLERS = (
    "kubernetesimagepullers.che.eclipse.org",
    "/apis/che.eclipse.org/v1alpha1/namespaces/{namespace}/kubernetesimagepullers",
)
_MERGE_PATCH = "application/merge-patch+json"


def _path(kind: tuple[str, str], namespace: str, name: str = "") -> str:
    """The collection's path in ``namespace`` (every namespace when empty), or one object's
    when ``name`` is given."""
    if not namespace:
        return kind[1].replace("/namespaces/{namespace}", "")
    collection = kind[1].format(namespace=namespace)
    return f"{collection}/{name}" if name else collection


class Kube(ApiTransport):
    """A narrow client: the calls the puller makes, by kind and verb. How each request is sent,
    retried and its failure mapped is :class:`ApiTransport`'s; constructed as it is."""

    def get_daemonset(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get_object(DAEMONSETS, namespace, name)

    def create_daemonset(self, body: dict[str, Any], *, dry_run: bool = False) -> DaemonSet:
        """Create; ``dry_run`` has the API validate and admit it without storing anything."""
        extra = [("dryRun", "All")] if dry_run else []
        namespace = objects.metadata(body)["namespace"]
        return self._write("create", "POST", namespace, "", body, extra)

    def delete_daemonset(
        self,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        foreground: bool = True,
        timeout: tuple[float, float] | None = None,
    ) -> bool:
        """Delete; False when it was already gone. ``uid`` guards against deleting a successor."""
        body: dict[str, Any] = {
            "propagationPolicy": "Foreground" if foreground else "Background",
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call(
                "delete",
                DAEMONSETS[0],
                namespace,
                self._send,
                "DELETE",
                _path(DAEMONSETS, namespace, name),
                body=body,
                _request_timeout=timeout or self.call_timeout,
            )
        except NotFound:
            return False
        return True

    def replace_daemonset(self, body: dict[str, Any]) -> DaemonSet:
        """Replace (PUT) it; ``metadata.resourceVersion`` in ``body`` guards against writing
        over a change made since it was read (409 Conflict)."""
        metadata = objects.metadata(body)
        return self._write("update", "PUT", metadata["namespace"], metadata["name"], body)

    def patch_daemonset(
        self, namespace: str, name: str, patch: dict[str, Any], *, uid: str | None = None
    ) -> DaemonSet:
        """A JSON merge patch; with ``uid``, it only applies to that DaemonSet (409 if the
        name now holds another one)."""
        if uid:
            patch = {**patch, "metadata": {**(patch.get("metadata") or {}), "uid": uid}}
        return self._write("patch", "PATCH", namespace, name, patch, content_type=_MERGE_PATCH)

    def _write(
        self,
        verb: str,
        method: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        extra_query: list[tuple[str, str]] | None = None,
        *,
        content_type: str = "application/json",
    ) -> DaemonSet:
        """Every DaemonSet write: strict, so a misspelt field (say in AFFINITY) is an error
        from the API, not silently dropped."""
        # Sound: this path is the DaemonSets collection, and the API answers a write there
        # with the DaemonSet as stored (a dry run: as it would be), in the view's shape.
        return cast(
            DaemonSet,
            self._call(
                verb,
                DAEMONSETS[0],
                namespace,
                self._send,
                method,
                _path(DAEMONSETS, namespace, name),
                query=[("fieldValidation", "Strict"), *(extra_query or [])],
                body=body,
                content_type=content_type,
            ),
        )

    def get_object(self, kind: tuple[str, str], namespace: str, name: str) -> dict[str, Any] | None:
        """One object (None when there is none)."""
        try:
            return self._call(
                "get", kind[0], namespace, self._send, "GET", _path(kind, namespace, name)
            )
        except NotFound:
            return None

    def create_object(
        self, kind: tuple[str, str], namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._call(
            "create", kind[0], namespace, self._send, "POST", _path(kind, namespace), body=body
        )

    def replace_object(
        self, kind: tuple[str, str], namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT; the body's resourceVersion guards against a change made since (Conflict)."""
        return self._call(
            "update", kind[0], namespace, self._send, "PUT", _path(kind, namespace, name), body=body
        )

    def merge_patch(
        self,
        kind: tuple[str, str],
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str = "",
    ) -> dict[str, Any]:
        """A JSON merge patch of the object, or of its ``subresource`` (``status``: the
        operator writes a resource's status and never its spec)."""
        path = _path(kind, namespace, name) + (f"/{subresource}" if subresource else "")
        resource = f"{kind[0]}/{subresource}" if subresource else kind[0]
        return self._call(
            "patch",
            resource,
            namespace,
            self._send,
            "PATCH",
            path,
            body=patch,
            content_type=_MERGE_PATCH,
        )

    def list_objects(
        self,
        kind: tuple[str, str],
        namespace: str,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        deadline: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` in ``namespace`` (every namespace: "") matching the
        selectors, and the list's resourceVersion, to watch from."""
        resource = kind[0]
        query = [("fieldSelector", field_selector)] if field_selector else []
        if label_selector:
            query.append(("labelSelector", label_selector))
        result = self._call(
            "list",
            resource,
            namespace,
            self._send,
            "GET",
            _path(kind, namespace),
            query=query,
            deadline=deadline,
        )
        return result.get("items") or [], objects.stored_resource_version(result)

    def watch_objects(
        self,
        kind: tuple[str, str],
        namespace: str,
        version: str,
        *,
        field_selector: str | None = None,
        seconds: int = WATCH_MAX_SECONDS,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Changes after ``version``: (ADDED | MODIFIED | DELETED | BOOKMARK, object) until the
        server ends the watch (at most ``seconds``). Raises Expired when ``version`` is too
        old (list again), Transient when the stream breaks, Stopped on stop."""
        resource = kind[0]
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds)),
        ]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        response = self._call_raw(
            "watch",
            resource,
            namespace,
            self._send,
            "GET",
            _path(kind, namespace),
            query=query,
            _request_timeout=(CALL_TIMEOUT[0], seconds + _WATCH_READ_SLACK),
        )
        return self._stream_events(response, resource, namespace)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get_object(DEPLOYMENTS, namespace, name)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return self.list_objects(PODS, namespace, label_selector=label_selector)[0]

    def list_daemonsets(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """DaemonSets matching ``label_selector`` in ``namespace``, or in every namespace the
        caller may list (None)."""
        return self.list_objects(DAEMONSETS, namespace or "", label_selector=label_selector)[0]

    def list_nodes(self) -> list[dict[str, Any]]:
        """Every node (cluster-scoped: needs a ClusterRole; Forbidden without one)."""
        return self.list_objects(NODES, "")[0]

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        return self.list_objects(CORE_EVENTS, namespace, field_selector=field_selector)[0]

    def is_openshift(self) -> bool:
        """OpenShift serves the route.openshift.io API group; plain Kubernetes does not."""
        groups = self._call("get", "API discovery (/apis)", "", self._send, "GET", "/apis")
        return any(g.get("name") == OPENSHIFT_API_GROUP for g in groups.get("groups") or [])
