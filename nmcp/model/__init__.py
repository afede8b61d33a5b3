"""The resource model: what an MCPServer and an MCPPool are, read from their objects.

The bottom layer. `hooks`, `gateway` and the embedded runtime all read these modules; these import
none of them, and no web, network or process library (pyproject's import contracts enforce it).
"""
