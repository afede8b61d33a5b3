"""The reconcile brain: Metacontroller webhooks for MCPPool and MCPServer.

`sync`, `lifecycle`, `admission` and `children` are pure functions of a Metacontroller request
body and the clock (`now` is passed in); `app` is the small Flask layer that exposes them as
webhooks, and `cli` runs it under gunicorn as `nmcp operator`.
"""
