"""podman as the image tests drive it: the image built by image/build.sh, and containers run the
way a kubelet runs the chart's Pod specs.

`kubelet_flags` turns a rendered Pod spec and one of its containers into `podman run` flags:
user and group, fsGroup, read-only root filesystem (and no other writable path than the Pod's
volumes: podman's own tmpfs on /tmp, /run and /var/tmp is turned off), dropped capabilities,
no-new-privileges, the memory limit, env, emptyDirs as tmpfs of their sizeLimit, and the service
account token where the Pod mounts one. What it cannot translate (another volume type, an env
var from a Secret) fails the test rather than being skipped: a chart change must not silently
leave the test checking less.

Every container shares the host's network (`--network host`): no network plugin runs here, and so
containers reach the test suite's loopback services (kube-apiserver, MCP servers) and the tests
reach the container's ports on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ROOT, wait_for

# crun fails on these machines' hybrid cgroups; runc needs explicit rlimits (the defaults podman
# asks for exceed what the sandbox allows).
GLOBAL = ["--cgroup-manager=cgroupfs"]
RUNTIME = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
BUILD_SCRIPT = ROOT / "image" / "build.sh"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What `make image` tags, and what the chart's default image reference (repository nmcp, tag
# appVersion) resolves to in podman's local storage.
IMAGE = f"localhost/nmcp:{PROJECT['version']}"
# `nmcp up` in a container runs servers inside it: the image for that test adds the
# mcp-server-time the test suite pins.
UP_IMAGE = "localhost/nmcp-up:test"
(TIME_SERVER,) = [req for req in PROJECT["optional-dependencies"]["examples"] if req.startswith("mcp-server-time==")]
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_names = itertools.count(1)


def podman_bin() -> str:
    """The podman binary; FAILS (never skips) when it is missing."""
    found = shutil.which("podman")
    if not found:
        pytest.fail("podman is missing: run .ci/setup (it installs podman, runc and mmdebstrap)", pytrace=False)
    return found


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([podman_bin(), *GLOBAL, *args], check=False, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def build(tag: str, extra_packages: str = "") -> str:
    """`image/build.sh TAG` (what `make image` runs); the image reference it printed."""
    podman_bin()
    env = {**os.environ, "EXTRA_PACKAGES": extra_packages}
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), tag], check=False, capture_output=True, text=True, env=env,
                          timeout=270, cwd=ROOT)
    assert proc.returncode == 0, f"image/build.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return proc.stdout.strip().splitlines()[-1]


def inspect(image: str) -> dict[str, Any]:
    return json.loads(podman("image", "inspect", image).stdout)[0]


# ---- Pod specs as podman flags --------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccount:
    """What a kubelet gives a Pod whose token is mounted: the files, and the API server's address."""

    directory: Path  # holds token, ca.crt, namespace
    host: str
    port: int


_BINARY = {"Ki": "k", "Mi": "m", "Gi": "g"}


def _size(quantity: str) -> str:
    """A Kubernetes binary quantity (16Mi) as podman writes sizes (16m, powers of 1024 too)."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", str(quantity))
    assert match, f"size {quantity!r}: only Ki, Mi and Gi quantities are translated"
    return match[1] + _BINARY[match[2]]


def kubelet_flags(pod: Mapping[str, Any], container: Mapping[str, Any],
                  service_account: ServiceAccount | None = None) -> list[str]:
    """`podman run` flags that run `container` of Pod spec `pod` with the settings a kubelet applies."""
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    user, group = sc.get("runAsUser", pod_sc.get("runAsUser")), sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    assert user is not None and group is not None, "the chart must set a numeric user and group"
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        assert int(user) != 0, "runAsNonRoot with user 0: a kubelet refuses to start it"
    flags = ["--user", f"{user}:{group}"]
    if pod_sc.get("fsGroup") is not None:
        flags += ["--group-add", str(pod_sc["fsGroup"])]
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    assert seccomp == "RuntimeDefault", f"seccomp profile {seccomp}: only RuntimeDefault (podman's default) is run"
    if sc.get("readOnlyRootFilesystem"):
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    assert not sc.get("privileged"), "a privileged container"
    capabilities = sc.get("capabilities") or {}
    flags += [f"--cap-drop={cap}" for cap in capabilities.get("drop") or ()]
    flags += [f"--cap-add={cap}" for cap in capabilities.get("add") or ()]
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if memory:
        flags += ["--memory", _size(memory)]
    for var in container.get("env") or ():
        assert "value" in var, f"env {var['name']}: only literal values are translated, not {sorted(var)}"
        flags += ["--env", f"{var['name']}={var['value']}"]
    volumes = {vol["name"]: vol for vol in pod.get("volumes") or ()}
    for mount in container.get("volumeMounts") or ():
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume, f"volume {mount['name']}: only emptyDir is translated, not {sorted(volume)}"
        options = ["rw", "mode=1777"]
        if (volume["emptyDir"] or {}).get("sizeLimit"):
            options.append(f"size={_size(volume['emptyDir']['sizeLimit'])}")
        flags += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]
    mounts_token = pod.get("automountServiceAccountToken", True)
    if service_account is None:
        assert not mounts_token, "the Pod mounts a service account token: give the test one"
    else:
        assert mounts_token, "the Pod mounts no service account token, yet the test gives one"
        flags += ["--volume", f"{service_account.directory}:{SERVICE_ACCOUNT_DIR}:ro",
                  "--env", f"KUBERNETES_SERVICE_HOST={service_account.host}",
                  "--env", f"KUBERNETES_SERVICE_PORT={service_account.port}"]
    if container.get("command"):
        flags += ["--entrypoint", json.dumps(container["command"])]
    return flags


def service_account_files(directory: Path, token: str, ca: Path, namespace: str) -> Path:
    """The files a kubelet projects into a Pod for its service account, readable by any user."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name, text in (("token", token), ("ca.crt", ca.read_text()), ("namespace", namespace)):
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)
    return directory


def probe_url(container: Mapping[str, Any], probe: str) -> str:
    """The URL a kubelet's httpGet `probe` (e.g. readinessProbe) of `container` asks, on loopback."""
    get = container[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in container.get("ports") or () if p.get("name") == port]
    return f"http://127.0.0.1:{port}{get.get('path', '/')}"


# ---- running containers ---------------------------------------------------------------------


@dataclass
class Container:
    name: str

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
        return state == "true"


@contextlib.contextmanager
def run(image: str, args: Sequence[str], flags: Sequence[str] = (), *, add_hosts: Mapping[str, str] | None = None,
        ) -> Iterator[Container]:
    """A detached container of `image` on the host's network; removed afterwards, its log printed
    (pytest shows it when the test failed)."""
    name = f"nmcp-test-{os.getpid()}-{next(_names)}"
    hosts = [f"--add-host={host}:{ip}" for host, ip in (add_hosts or {}).items()]
    podman("run", "--detach", "--name", name, "--pull=never", "--network", "host", *RUNTIME, *hosts, *flags,
           image, *args)
    container = Container(name)
    try:
        yield container
    finally:
        print(f"---- log of container {name} ({image} {' '.join(args)}) ----\n{container.logs()}")
        podman("rm", "--force", "--time", "10", name, check=False)


def wait_answering(container: Container, url: str, status: int = 200, timeout: float = 60) -> requests.Response:
    """The first answer of `url` with `status`; fails at once, with the log, if the container stopped."""

    def check() -> requests.Response | None:
        try:
            resp = requests.get(url, timeout=5)
        except requests.RequestException:
            resp = None
        if resp is not None and resp.status_code == status:
            return resp
        if not container.running():
            raise AssertionError(f"container {container.name} stopped before {url} answered:\n{container.logs()}")
        return None

    return wait_for(check, f"{url} to answer {status}", timeout)
