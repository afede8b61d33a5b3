"""nmcp: run MCP servers on demand behind one gateway, on Kubernetes or on one machine."""

__version__ = "0.1.0"
