"""The one module that talks to the Kubernetes API (REST with `requests`, WebSocket for attach).

Every call names the access it needs (`Access`: verb, resource, namespace), so an API error
becomes a gateway error that says what went wrong in an operator's words: a 403 names the
missing permission (`gateway.runtime.Forbidden`), a 404 the missing object.

`verify=` goes explicitly on every request and the session ignores the environment
(`trust_env = False`): a `REQUESTS_CA_BUNDLE` set on the machine would otherwise replace the
cluster's CA (psf/requests#3829). Proxies from the environment are resolved once, here.
Tokens from a file (a projected service-account token) are re-read whenever the file changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import requests.adapters
import requests.utils
import websocket

from gateway.kube.config import Cluster
from gateway.runtime import Forbidden, RuntimeError_

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Resource:
    """A resource type: `group` is "" for the core API."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        path = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path

    def describe(self, subresource: str | None = None) -> str:
        """As RBAC spells it: `pods/attach`, `mcpservers.nmcp.nwrx.io`."""
        name = self.plural + (f"/{subresource}" if subresource else "")
        return f"{name}.{self.group}" if self.group else name


PODS = Resource("", "v1", "pods")
MCPSERVERS = Resource("nmcp.nwrx.io", "v1", "mcpservers")
MCPACCESSPOLICIES = Resource("nmcp.nwrx.io", "v1", "mcpaccesspolicies")
TOKENREVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews")


@dataclass(frozen=True)
class Access:
    """What one call needs: RBAC verb, resource (with subresource), namespace (None: all)."""

    verb: str
    resource: Resource
    namespace: str | None
    subresource: str | None = None

    def __str__(self) -> str:
        where = f"in namespace {self.namespace}" if self.namespace else "in all namespaces (cluster-wide)"
        return f"{self.verb} {self.resource.describe(self.subresource)} {where}"


class KubeError(RuntimeError_):
    """The API server refused or failed a call; `status` is its HTTP status (0: unreachable)."""

    code = "kubernetes_error"
    http_status = 502

    def __init__(self, message: str, reason: str = "", status: int = 0) -> None:
        super().__init__(message, reason)
        self.status = status


class NotFound(KubeError):
    code = "kubernetes_not_found"
    http_status = 404


class Gone(KubeError):
    """410: a watch's resourceVersion is too old; list again."""

    code = "kubernetes_gone"


class Unreachable(KubeError):
    code = "kubernetes_unreachable"
    http_status = 503


class KubeForbidden(Forbidden, KubeError):
    """403, with the access that was refused (a `Forbidden` to the gateway, a KubeError here)."""

    def __init__(self, message: str, access: Access) -> None:
        KubeError.__init__(self, message, reason="Forbidden", status=403)
        self.access = access


def _status_message(resp: requests.Response) -> tuple[str, str]:
    """(reason, message) of a metav1.Status body, or of whatever the body is."""
    try:
        body = resp.json()
    except ValueError:
        return resp.reason or "", resp.text[:300]
    if isinstance(body, dict):
        return str(body.get("reason") or resp.reason or ""), str(body.get("message") or "")
    return resp.reason or "", str(body)[:300]


def error_for(status: int, reason: str, message: str, access: Access, source: str) -> KubeError | Forbidden:
    """The gateway error for an API status: 403 names the missing permission."""
    if status == 403:
        return KubeForbidden(f"the gateway's Kubernetes identity ({source}) may not {access}: add it to the "
                             f"gateway's Role (API server: {message})", access)
    if status == 401:
        return KubeError(f"the API server did not accept the gateway's credentials ({source}): {message}",
                         reason="Unauthorized", status=status)
    if status == 404:
        return NotFound(f"not found: {message or access}", reason="NotFound", status=status)
    if status == 410:
        return Gone(message or "resource version too old", reason="Expired", status=status)
    return KubeError(f"Kubernetes API: {access} failed with {status} {reason}: {message}", reason=reason,
                     status=status)


class _TokenSource:
    """The bearer token, re-read from its file when the file changes (kubelet rotates projected tokens)."""

    def __init__(self, token: str | None, token_file: str | None) -> None:
        self._token, self._file = token, token_file
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def get(self) -> str | None:
        if not self._file:
            return self._token
        try:
            st = os.stat(self._file)
        except OSError:
            return self._token  # keep the last good token while the file is being swapped
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                with open(self._file, encoding="utf-8") as handle:
                    self._token = handle.read().strip()
                self._stamp = stamp
            return self._token


class WatchStream:
    """The events of one open watch; `close()` (from any thread) ends it."""

    def __init__(self, resp: requests.Response, resource: Resource) -> None:
        self._resp, self._resource = resp, resource
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The decoded events, BOOKMARK and ERROR ones included; Unreachable when the stream drops."""
        try:
            for line in self._resp.iter_lines(chunk_size=None):
                if line:
                    yield json.loads(line)
        except (requests.RequestException, ValueError, AttributeError) as err:
            if not self.closed:
                what = self._resource.describe()
                raise Unreachable(f"watch of {what} dropped: {err}", reason="WatchDropped") from err
        finally:
            self._resp.close()

    def close(self) -> None:
        """Shut the socket down: the reading thread wakes and closes the response itself (closing a
        response another thread is reading from blocks on its buffer lock)."""
        self.closed = True
        sock = getattr(getattr(self._resp.raw, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class KubeClient:
    """A small Kubernetes REST client; safe to share between greenlets/threads."""

    def __init__(self, cluster: Cluster, pool_size: int = 64) -> None:
        self.cluster = cluster
        self._tokens = _TokenSource(cluster.token, cluster.token_file)
        self._session = requests.Session()
        self._session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify (psf/requests#3829)
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._proxies = requests.utils.get_environ_proxies(cluster.server)

    def close(self) -> None:
        self._session.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "nmcp-gateway"}
        token = self._tokens.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return {**headers, **(extra or {})}

    def call(self, method: str, access: Access, path: str, *, params: Mapping[str, Any] | None = None,
             body: Any = None, content_type: str = "application/json", stream: bool = False,
             read_timeout: float = REQUEST_TIMEOUT) -> requests.Response:
        """One API call; a non-2xx answer raises the matching gateway error."""
        headers = self._headers({"Content-Type": content_type} if body is not None else None)
        try:
            resp = self._session.request(
                method, self.cluster.server + path, params=params, headers=headers,
                data=json.dumps(body) if body is not None else None, stream=stream,
                timeout=(CONNECT_TIMEOUT, read_timeout), verify=self.cluster.verify,
                cert=self.cluster.client_cert, proxies=self._proxies)
        except requests.RequestException as err:
            raise Unreachable(f"Kubernetes API at {self.cluster.server} unreachable ({access}): {err}",
                              reason="Unreachable") from err
        if resp.status_code >= 300:
            reason, message = _status_message(resp)
            resp.close()
            raise error_for(resp.status_code, reason, message, access, self.cluster.source)
        return resp

    # ---- typed helpers ------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        access = Access("get", resource, namespace)
        return self.call("GET", access, resource.path(namespace, name)).json()

    def token_review(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        """The API server's verdict on a bearer token (TokenReview): its `status`."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": list(audiences)}}
        access = Access("create", TOKENREVIEWS, None)
        return self.call("POST", access, TOKENREVIEWS.path(None), body=body).json().get("status", {})

    def list(self, resource: Resource, namespace: str | None, label_selector: str | None = None) -> dict[str, Any]:
        params = {"labelSelector": label_selector} if label_selector else None
        return self.call("GET", Access("list", resource, namespace), resource.path(namespace), params=params).json()

    def merge_patch(self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        access = Access("patch", resource, namespace)
        return self.call("PATCH", access, resource.path(namespace, name), body=patch,
                         content_type="application/merge-patch+json").json()

    def watch(self, resource: Resource, namespace: str | None, resource_version: str, *, timeout_seconds: int,
              label_selector: str | None = None) -> WatchStream:
        """Open a watch from `resource_version`; the server ends it after `timeout_seconds`."""
        params: dict[str, Any] = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                                  "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        resp = self.call("GET", Access("watch", resource, namespace), resource.path(namespace), params=params,
                         stream=True, read_timeout=timeout_seconds + 30)
        return WatchStream(resp, resource)

    def stream_lines(self, resource: Resource, namespace: str, name: str, subresource: str,
                     params: Mapping[str, Any]) -> Iterator[str]:
        """A streamed text subresource (pods/log), line by line, until the server ends it."""
        access = Access("get", resource, namespace, subresource)
        resp = self.call("GET", access, resource.path(namespace, name, subresource), params=params, stream=True,
                         read_timeout=24 * 3600)
        try:
            for line in resp.iter_lines(chunk_size=None):
                yield line.decode("utf-8", errors="replace")
        except requests.RequestException as err:
            raise Unreachable(f"log stream of {namespace}/{name} dropped: {err}", reason="StreamDropped") from err
        finally:
            resp.close()

    def open_websocket(self, resource: Resource, namespace: str, name: str, *, subresource: str,
                       params: Sequence[tuple[str, str]], subprotocols: Sequence[str]) -> websocket.WebSocket:
        """Open a WebSocket to a connect subresource (pods/attach); the server picks a subprotocol."""
        access = Access("get", resource, namespace, subresource)  # a WebSocket upgrade is a GET
        url = self.cluster.server + resource.path(namespace, name, subresource) + "?" + urlencode(list(params))
        ws_url = "wss://" + url.removeprefix("https://") if url.startswith("https://") else \
            "ws://" + url.removeprefix("http://")
        sslopt: dict[str, Any] = {}
        if self.cluster.insecure:
            sslopt["cert_reqs"] = ssl.CERT_NONE
            sslopt["check_hostname"] = False
        elif self.cluster.ca_file:
            sslopt["ca_certs"] = self.cluster.ca_file
        if self.cluster.client_cert:
            sslopt["certfile"], sslopt["keyfile"] = self.cluster.client_cert
        token = self._tokens.get()
        header = [f"Authorization: Bearer {token}"] if token else []
        proxy = self._proxies.get(urlsplit(self.cluster.server).scheme)
        proxy_opts: dict[str, Any] = {}
        if proxy:
            parts = urlsplit(proxy)
            proxy_opts = {"http_proxy_host": parts.hostname, "http_proxy_port": parts.port, "proxy_type": "http"}
        try:
            return websocket.create_connection(ws_url, subprotocols=list(subprotocols), header=header, sslopt=sslopt,
                                               timeout=CONNECT_TIMEOUT, enable_multithread=True, **proxy_opts)
        except websocket.WebSocketBadStatusException as err:
            body = err.resp_body.decode("utf-8", "replace") if isinstance(err.resp_body, bytes) else ""
            try:
                parsed = json.loads(body)
                reason, message = str(parsed.get("reason", "")), str(parsed.get("message", body))
            except (ValueError, AttributeError):
                reason, message = "", body[:300]
            raise error_for(err.status_code, reason, message, access, self.cluster.source) from err
        except (OSError, websocket.WebSocketException) as err:
            raise Unreachable(f"{access}: WebSocket to {self.cluster.server} failed: {err}",
                              reason="Unreachable") from err
