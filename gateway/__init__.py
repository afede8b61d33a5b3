"""The nmcp gateway: one HTTP endpoint for every MCP server (the data plane)."""
