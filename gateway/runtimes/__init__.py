"""Runtimes the gateway package holds itself: `kubernetes` (Pods made by the hooks in a cluster).

The local runtime is `nmcp.embedded` (above the gateway); `nmcp.serve` picks one and hands it to
`gateway.app.create_app`.
"""
