"""The MCP protocol as the gateway speaks it, pure (no I/O): JSON-RPC messages (`jsonrpc`), the
protocol revisions and HTTP headers (`versions`), and the 2026-07-28 stateless revision's
translation to and from the handshake era the gateway speaks upstream (`stateless`).
"""
