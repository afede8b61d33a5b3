"""The CustomResourceDefinitions of nmcp, shipped as package data.

The YAML files beside this module are the one source of the MCPServer and MCPPool schemas;
everything else (`nmcp export`, `nmcp up` validation, the Helm chart) reads them through here.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

FILES = {"server": "mcpservers.yaml", "pool": "mcppools.yaml", "policy": "mcpaccesspolicies.yaml"}
KINDS = {"server": "MCPServer", "pool": "MCPPool", "policy": "MCPAccessPolicy"}


def read_text(resource: str) -> str:
    """The CRD file of `resource` (a key of FILES), byte for byte."""
    return resources.files(__name__).joinpath(FILES[resource]).read_text(encoding="utf-8")


def load(resource: str) -> dict[str, Any]:
    """The CRD of `resource` (a key of FILES) as a dict."""
    return yaml.safe_load(read_text(resource))


def openapi_schema(resource: str) -> dict[str, Any]:
    """The `openAPIV3Schema` of the served version."""
    crd = load(resource)
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]
