"""An MCP server over Streamable HTTP (the official Python SDK) on a loopback port, reached by the
host name its Service would have in a cluster.

`python http_server.py PORT HOST`: serves /mcp on 127.0.0.1:PORT with one tool, `echo`. The SDK
refuses requests whose Host header is not a loopback name (DNS rebinding protection); a server
deployed behind a Service allows its Service name, as this one allows HOST:PORT.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("nmcp-image-test")


@server.tool()
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


def main() -> None:
    port, host = int(sys.argv[1]), sys.argv[2]
    security = TransportSecuritySettings(allowed_hosts=[f"{host}:{port}", f"127.0.0.1:{port}"])
    server.run("streamable-http", host="127.0.0.1", port=port, transport_security=security)


if __name__ == "__main__":
    main()
