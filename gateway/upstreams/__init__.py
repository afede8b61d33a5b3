"""Upstreams: the gateway's one connection to a running server, whatever transport it speaks.

`port` is what the bridge sees: parsed messages in and out. `stdio` speaks newline-delimited
JSON over a `StdioConnection` (a local process's pipes, a Kubernetes `pods/attach` stream);
`http` is one MCP client session to a server that speaks HTTP itself.
"""
