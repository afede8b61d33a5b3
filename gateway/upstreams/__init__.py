"""Upstreams: the gateway's one connection to a running server, whatever transport it speaks.

Every upstream is a `StdioConnection` (whole JSON-RPC messages as bytes in and out): a local
process's stdio, a Kubernetes `pods/attach` stream, or (`http.py`) one MCP session to an HTTP
server. `stdio.Upstream` turns any of them into a stream of parsed messages for the bridge.
"""
