"""The `nmcp` command: one thin click group; each command parses options and calls one function."""

from __future__ import annotations

import json
import sys

import click
import yaml

import crds
from hooks.cli import operator
from nmcp.run import gateway, up


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="nmcp")
def main() -> None:
    """Run MCP servers on demand behind one HTTP gateway, on Kubernetes or on one machine."""


@main.command()
@click.option("--type", "kind", type=click.Choice(["crd", "schema"]), required=True,
              help="crd: the CustomResourceDefinition; schema: its openAPIV3Schema alone.")
@click.option("--resource", type=click.Choice(sorted(crds.FILES)), required=True,
              help="server (MCPServer) or pool (MCPPool).")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--output", "-o", type=click.File("w"), default="-", help="File to write (default: standard output).")
def export(kind: str, resource: str, fmt: str, output: click.utils.LazyFile) -> None:
    """Print a CRD or its schema, e.g. `nmcp export --type crd --resource server | kubectl apply -f -`."""
    if kind == "crd" and fmt == "yaml":
        text = crds.read_text(resource)  # the file itself, comments and all
    else:
        data = crds.load(resource) if kind == "crd" else crds.openapi_schema(resource)
        text = json.dumps(data, indent=2) + "\n" if fmt == "json" else yaml.safe_dump(data, sort_keys=False)
    output.write(text)


main.add_command(operator)
main.add_command(gateway)
main.add_command(up)


if __name__ == "__main__":
    sys.exit(main())
