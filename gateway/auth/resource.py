"""The gateway as OAuth protected resources (RFC 9728): which resource a request is for, its
metadata document, and the `WWW-Authenticate` challenges of the MCP authorization specification.

Each server is its own resource, identified by the URL of its Streamable HTTP endpoint
(`<base>/api/v1/servers/NAME/mcp`, or the namespaced form when called by it): a token is accepted
for a server's endpoints (mcp, sse, message, REST) when its audience is that URL (RFC 8707) or one of
NMCP_AUTH_AUDIENCES. Paths that name no server (the server list) are the gateway's own resource,
`<base>`. `<base>` is NMCP_AUTH_RESOURCE_URL, else the scheme and Host the request came with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_SERVER_PATH = re.compile(r"^(/api/v1(?:/namespaces/[^/]+)?/servers/[^/]+)(?:/.*)?$")


@dataclass(frozen=True)
class Resource:
    url: str  # the resource identifier (token audience)
    metadata_url: str  # where its RFC 9728 document is served


def resource_for(base: str, path: str) -> Resource:
    """The protected resource a request path belongs to."""
    base = base.rstrip("/")
    match = _SERVER_PATH.match(path)
    suffix = match.group(1) + "/mcp" if match else ""
    return Resource(url=base + suffix, metadata_url=base + WELL_KNOWN + suffix)


def is_resource_path(path: str) -> bool:
    """Whether `path` (after the well-known prefix) names a resource: the gateway's or a server's."""
    return resource_for("", path).url == path


def metadata(resource: Resource, issuers: list[str], scopes: tuple[str, ...]) -> dict[str, Any]:
    return {"resource": resource.url, "authorization_servers": issuers, "bearer_methods_supported": ["header"],
            "scopes_supported": list(scopes), "resource_name": "nmcp gateway"}


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(resource: Resource, error: str = "", description: str = "", scope: str = "") -> str:
    """A `WWW-Authenticate: Bearer ...` value (RFC 6750 §3, RFC 9728 §5.1)."""
    params = [f"resource_metadata={_quoted(resource.metadata_url)}"]
    if error:
        params.append(f"error={_quoted(error)}")
    if description:
        params.append(f"error_description={_quoted(description)}")
    if scope:
        params.append(f"scope={_quoted(scope)}")
    return "Bearer " + ", ".join(params)
