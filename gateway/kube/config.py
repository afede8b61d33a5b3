"""Where the Kubernetes API is and who the gateway is there: in-cluster or from a kubeconfig.

Resolution order (`load_cluster`): an explicit kubeconfig (the gateway's `kubeconfig` setting, the
CLI's `--kubeconfig`), then `KUBECONFIG`, then the in-cluster service account when
`KUBERNETES_SERVICE_HOST` is set, then `~/.kube/config`. kubeconfig users may authenticate with a
bearer token (`token`, `tokenFile`) or a client certificate (`client-certificate[-data]` and
`client-key[-data]`); `exec` and `auth-provider` plugins are refused with a clear error.

This module reads files only; `gateway.kube.client` is the one module that talks to the API.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ClusterConfigError(ValueError):
    """No usable cluster configuration; the message says what is missing or wrong."""


@dataclass(frozen=True)
class Cluster:
    """How to reach and authenticate to one API server."""

    server: str  # https://host:port, no trailing slash
    namespace: str  # the default namespace: the Pod's own, or the kubeconfig context's
    source: str  # where this came from, for messages
    ca_file: str | None = None  # None: the system's trust store
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None  # re-read whenever the file changes (projected tokens rotate)
    client_cert: tuple[str, str] | None = None  # (certificate file, key file)

    @property
    def verify(self) -> bool | str:
        """The `verify=` to pass to requests on every call."""
        if self.insecure:
            return False
        return self.ca_file or True


def in_cluster(environ: Mapping[str, str], account_dir: Path = SERVICE_ACCOUNT_DIR) -> Cluster:
    """The API server and service account of the Pod this process runs in."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ClusterConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST is not set")
    token_file = account_dir / "token"
    if not token_file.is_file():
        raise ClusterConfigError(f"in-cluster: no service account token at {token_file} "
                                 "(is automountServiceAccountToken off?)")
    ns_file = account_dir / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.is_file() else "default"
    ca = account_dir / "ca.crt"
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return Cluster(server=f"https://{host}:{port}", namespace=namespace, source="in-cluster service account",
                   ca_file=str(ca) if ca.is_file() else None, token_file=str(token_file))


def _read_kubeconfigs(paths: list[Path]) -> dict[str, Any]:
    """Merge kubeconfig files as kubectl does: the first file to define a name wins."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": None}
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ClusterConfigError(f"kubeconfig {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ClusterConfigError(f"kubeconfig {path}: not YAML: {err}") from err
        if not isinstance(doc, dict):
            raise ClusterConfigError(f"kubeconfig {path}: expected a mapping")
        for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in doc.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") and entry["name"] not in merged[section]:
                    merged[section][entry["name"]] = (entry.get(key) or {}, path)
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
    return merged


def _private_dir() -> Path:
    """A directory only we can read, removed at exit: requests and ssl need key material as files."""
    path = Path(tempfile.mkdtemp(prefix="nmcp-kube-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _material(entry: Mapping[str, Any], key: str, base: Path) -> str | None:
    """A file path for `key` (a path relative to the kubeconfig) or `key-data` (base64, written out)."""
    if entry.get(f"{key}-data"):
        try:
            data = base64.b64decode(entry[f"{key}-data"], validate=True)
        except ValueError as err:
            raise ClusterConfigError(f"kubeconfig: {key}-data is not base64") from err
        fd, name = tempfile.mkstemp(prefix=f"{key}-", dir=_private_dir())
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return name
    if entry.get(key):
        return str((base.parent / str(entry[key])).resolve())
    return None


def from_kubeconfig(paths: list[Path], context: str | None = None) -> Cluster:
    """The cluster and user of `context` (default: the current context) in the merged kubeconfig."""
    config = _read_kubeconfigs(paths)
    names = ", ".join(str(p) for p in paths)
    name = context or config["current-context"]
    if not name:
        raise ClusterConfigError(f"kubeconfig {names}: no current-context set")
    if name not in config["contexts"]:
        raise ClusterConfigError(f"kubeconfig {names}: context {name!r} not found")
    ctx, _ = config["contexts"][name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in config["clusters"]:
        raise ClusterConfigError(f"kubeconfig {names}: cluster {cluster_name!r} of context {name!r} not found")
    cluster, cluster_path = config["clusters"][cluster_name]
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise ClusterConfigError(f"kubeconfig {names}: cluster {cluster_name!r} has no server URL")
    user, user_path = config["users"].get(user_name, ({}, cluster_path))
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise ClusterConfigError(f"kubeconfig {names}: user {user_name!r} uses an {plugin} plugin, which the "
                                     "gateway does not run; use a token, tokenFile or client certificate")
    cert = _material(user, "client-certificate", user_path)
    key = _material(user, "client-key", user_path)
    if bool(cert) != bool(key):
        raise ClusterConfigError(f"kubeconfig {names}: user {user_name!r} needs both a client certificate and a key")
    token_file = user.get("tokenFile")
    return Cluster(
        server=server,
        namespace=str(ctx.get("namespace") or "default"),
        source=f"kubeconfig {names} (context {name})",
        ca_file=_material(cluster, "certificate-authority", cluster_path),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=str(user["token"]) if user.get("token") else None,
        token_file=str((user_path.parent / str(token_file)).resolve()) if token_file else None,
        client_cert=(cert, key) if cert and key else None,
    )


def load_cluster(environ: Mapping[str, str], kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """The cluster to use, in the order of the module docstring; `environ` gives the standard
    variables (KUBECONFIG, KUBERNETES_SERVICE_HOST, HOME), the gateway's settings the rest."""
    if kubeconfig:
        return from_kubeconfig([Path(kubeconfig)], context)
    if environ.get("KUBECONFIG"):
        paths = [Path(p) for p in environ["KUBECONFIG"].split(os.pathsep) if p]
        return from_kubeconfig([p for p in paths if p.exists()] or paths, context)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster(environ)
    default = Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"
    if default.exists():
        return from_kubeconfig([default], context)
    raise ClusterConfigError("no Kubernetes configuration: not in a cluster, and neither NMCP_KUBECONFIG, "
                             f"KUBECONFIG nor {default} is set")
