"""A real kube-apiserver (1.20.2, built by `.ci/kube-apiserver.sh`) and etcd for the tests.

`kube_api` is a session-scoped pytest fixture: it starts etcd and kube-apiserver on free loopback
ports in a temp dir, waits for /readyz and yields a `KubeAPI` handle. Test areas register it by
importing it into their conftest.py (`from tests.support.kubeapi import kube_api`).

The API server serves TLS with a CA made here, so clients verify it for real (a kubeconfig with
`certificate-authority-data`, no insecure-skip-tls-verify, no urllib3 warnings). The same CA signs
client certificates, so kubeconfig users with client certificates can be tested too.
Authorization is RBAC. Identities for RBAC tests:
- `admin_token`: user `admin` in `system:masters`;
- static tokens for users with no permissions at all (`static_tokens`, e.g. "alice", "bob");
- `service_account_token(ns, name)`: a real ServiceAccount token from the TokenRequest API,
  which is how the gateway authenticates in a cluster;
- `client_certificate(user, groups)`: a client certificate signed by the cluster CA.

There is no kubelet, scheduler or controller-manager: Pods stay Pending unless a test writes
their status, and owner references are never garbage-collected.

Pitfall handled here: these machines set REQUESTS_CA_BUNDLE, which overrides a requests
Session's `verify` unless `trust_env` is off (psf/requests#3829).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support import free_port, stop

KUBE_CACHE = Path(os.environ.get("NMCP_KUBE_CACHE", "/var/cache/nmcp"))
APISERVER_BIN = KUBE_CACHE / "kube-apiserver-1.20.2"
# CI installs Debian's kubernetes-client (kubectl 1.20); developers may have a newer one. Tests use
# only what both do (no `--subresource`: status is written over REST).
KUBECTL = os.environ.get("NMCP_KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ADMIN_TOKEN = "nmcp-test-admin-token"
# Users that exist but hold no permissions: RBAC tests bind Roles to them.
STATIC_USERS = ("alice", "bob", "carol")
START_TIMEOUT = 90.0


class KubeAPIError(RuntimeError):
    """The test API server could not be started or used; the message says why."""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _die_with_parent(argv: list[str]) -> list[str]:
    """`argv` run so that it is killed when the test process dies, even by SIGKILL (no orphans).

    setpriv (util-linux, always on Debian) sets the parent-death signal and execs; a preexec_fn
    would do the same but is unsafe in a process with threads.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def _stop(proc: subprocess.Popen | None, grace: float = 5) -> None:
    if proc is not None:
        stop(proc, grace)  # a short grace: kube-apiserver waits for open watches; nothing here needs that


class KubeAPI:
    """A running etcd + kube-apiserver pair; see the module docstring."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = ADMIN_TOKEN
        self.static_tokens = {user: f"nmcp-test-{user}-token" for user in STATIC_USERS}
        self.ca_file = self.dir / "ca.crt"
        self.kubeconfig = self.dir / "kubeconfig"
        self.port = 0
        self.etcd_port = 0
        self._etcd: subprocess.Popen | None = None
        self._apiserver: subprocess.Popen | None = None
        self._names = itertools.count(1)

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not APISERVER_BIN.exists():
            raise KubeAPIError(f"{APISERVER_BIN} is missing: build it once with `.ci/kube-apiserver.sh` "
                               "(about 4 minutes; see ../shared/reference/kube-apiserver.md)")
        self._make_credentials()
        # Free ports can be taken by a parallel test run between probing and binding: retry.
        for attempt in range(3):
            try:
                self._start_etcd()
                self.port = free_port()
                self._start_apiserver()
                break
            except KubeAPIError:
                self.stop()
                if attempt == 2:
                    raise
        self._write_kubeconfig(self.kubeconfig, token=self.admin_token)

    def stop(self) -> None:
        _stop(self._apiserver)
        _stop(self._etcd)
        self._apiserver = self._etcd = None

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port and etcd: every open watch drops."""
        _stop(self._apiserver)
        self._start_apiserver()

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (etcd keeps the data); `start_apiserver` brings it back."""
        _stop(self._apiserver)
        self._apiserver = None

    def start_apiserver(self) -> None:
        self._start_apiserver()

    def _make_credentials(self) -> None:
        d = self.dir
        if self.ca_file.exists():
            return
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "2", "-subj", "/CN=nmcp-test-ca", cwd=d)
        (d / "serving.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
                                       "extendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "serving.key", "-out", "serving.csr",
                 "-subj", "/CN=kube-apiserver", cwd=d)
        _openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "serving.crt", "-days", "2", "-extfile", "serving.ext", cwd=d)
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
        rows = [f"{ADMIN_TOKEN},admin,admin,system:masters"]
        rows += [f"{token},{user},{user}" for user, token in self.static_tokens.items()]
        (d / "tokens.csv").write_text("\n".join(rows) + "\n")

    def _start_etcd(self) -> None:
        self.etcd_port, peer = free_port(), free_port()
        data = self.dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        log = self.dir / "etcd.log"
        peer_url = f"http://127.0.0.1:{peer}"
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        with log.open("wb") as out:
            self._etcd = subprocess.Popen(_die_with_parent(
                [ETCD, "--name", "nmcp-test", "--data-dir", str(data), "--listen-client-urls", client_url,
                 "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
                 "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"nmcp-test={peer_url}",
                 "--logger", "zap", "--log-level", "warn"]),
                stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._etcd.poll() is not None:
                raise KubeAPIError(f"etcd exited with {self._etcd.returncode}:\n{_tail(log)}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(client_url + "/health", timeout=1).ok:
                    return
            time.sleep(0.2)
        raise KubeAPIError(f"etcd did not become healthy within 30s:\n{_tail(log)}")

    def _start_apiserver(self) -> None:
        d = self.dir
        log = d / "kube-apiserver.log"
        with log.open("ab") as out:
            self._apiserver = subprocess.Popen(_die_with_parent(
                [str(APISERVER_BIN), f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                 "--bind-address=127.0.0.1", f"--secure-port={self.port}",
                 f"--tls-cert-file={d / 'serving.crt'}", f"--tls-private-key-file={d / 'serving.key'}",
                 f"--client-ca-file={d / 'ca.crt'}", "--authorization-mode=RBAC",
                 f"--token-auth-file={d / 'tokens.csv'}",
                 "--service-account-issuer=https://kubernetes.default.svc",
                 f"--service-account-key-file={d / 'sa.pub'}",
                 f"--service-account-signing-key-file={d / 'sa.key'}",
                 "--service-cluster-ip-range=10.0.0.0/24", "--disable-admission-plugins=ServiceAccount",
                 # A test may serve a fake kubelet (pods/attach, pods/log) with a certificate of this CA.
                 f"--kubelet-certificate-authority={d / 'ca.crt'}", "--kubelet-preferred-address-types=InternalIP",
                 "--enable-priority-and-fairness=false", "--profiling=false", "--v=1"]),
                stdout=out, stderr=subprocess.STDOUT, cwd=d)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._apiserver.poll() is not None:
                raise KubeAPIError(f"kube-apiserver exited with {self._apiserver.returncode}:\n{_tail(log)}")
            with contextlib.suppress(requests.RequestException):
                if self.session().get(self.base_url + "/readyz", timeout=2).text == "ok":
                    return
            time.sleep(0.3)
        raise KubeAPIError(f"kube-apiserver not ready within {START_TIMEOUT}s:\n{_tail(log)}")

    # ---- clients ------------------------------------------------------------------------

    def session(self, token: str | None = None) -> requests.Session:
        """A Session that verifies the API server with its CA and sends `token` (default: admin)."""
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE replaces `verify` (psf/requests#3829)
        session.verify = str(self.ca_file)
        session.headers["Authorization"] = f"Bearer {token or self.admin_token}"
        return session

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                kubeconfig: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this API server (as admin unless another kubeconfig is given)."""
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        argv = [KUBECTL, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        proc = subprocess.run(argv, check=False, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubeAPIError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str, namespace: str | None = None,
              ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` a manifest (a dict, a list of dicts, or YAML text)."""
        text = manifest if isinstance(manifest, str) else yaml.safe_dump_all(
            [manifest] if isinstance(manifest, Mapping) else list(manifest))
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=text)

    def create_namespace(self, prefix: str = "t") -> str:
        """A new namespace with a unique name."""
        name = f"{prefix}-{os.getpid()}-{next(self._names)}"
        self.kubectl("create", "namespace", name)
        return name

    def install_crds(self) -> None:
        """Apply the CRDs from `crds/` and wait until they are served (idempotent)."""
        import crds

        names = []
        for resource in crds.FILES:
            self.kubectl("apply", "-f", "-", input=crds.read_text(resource))
            names.append(f"crd/{crds.load(resource)['metadata']['name']}")
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)

    # ---- identities ---------------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str, expiration_seconds: int = 3600,
                              audiences: Sequence[str] = ()) -> str:
        """Create ServiceAccount `name` (if needed) and return a fresh token for it (TokenRequest API),
        for `audiences` (default: the API server's own)."""
        session = self.session()
        url = f"{self.base_url}/api/v1/namespaces/{namespace}/serviceaccounts"
        created = session.post(url, json={"metadata": {"name": name}}, timeout=10)
        if created.status_code not in (201, 409):
            raise KubeAPIError(f"creating ServiceAccount {namespace}/{name}: {created.status_code} {created.text}")
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds,
                         **({"audiences": list(audiences)} if audiences else {})}}
        resp = session.post(f"{url}/{name}/token", json=body, timeout=10)
        if resp.status_code != 201:
            raise KubeAPIError(f"TokenRequest for {namespace}/{name}: {resp.status_code} {resp.text}")
        return resp.json()["status"]["token"]

    def client_certificate(self, user: str, groups: Sequence[str] = ()) -> tuple[Path, Path]:
        """A client certificate (and key) for `user` in `groups`, signed by the cluster CA."""
        stem = f"client-{user}-{next(self._names)}"
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
                 "-subj", subject, cwd=self.dir)
        (self.dir / f"{stem}.ext").write_text("extendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{stem}.crt", "-days", "2", "-extfile", f"{stem}.ext", cwd=self.dir)
        return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"

    def serving_certificate(self, name: str, ip: str = "127.0.0.1") -> tuple[Path, Path]:
        """A TLS server certificate (and key) for `ip`, signed by the cluster CA (e.g. for a fake kubelet)."""
        stem = f"serving-{name}-{next(self._names)}"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
                 "-subj", f"/CN={name}", cwd=self.dir)
        (self.dir / f"{stem}.ext").write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n")
        _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{stem}.crt", "-days", "2", "-extfile", f"{stem}.ext", cwd=self.dir)
        return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"

    def bump_etcd_revision(self, times: int = 1) -> None:
        """Write a key straight into etcd (bypassing the API server), moving its revision on."""
        url = f"http://127.0.0.1:{self.etcd_port}/v3/kv/put"
        key = base64.b64encode(b"/nmcp-test/bump").decode()
        session = requests.Session()
        session.trust_env = False
        for i in range(times):
            value = base64.b64encode(str(i).encode()).decode()
            session.post(url, json={"key": key, "value": value}, timeout=10).raise_for_status()

    def write_kubeconfig(self, path: Path, *, token: str | None = None, client_cert: tuple[Path, Path] | None = None,
                         namespace: str | None = None, server: str | None = None) -> Path:
        """A kubeconfig for this cluster with one user (a bearer token or a client certificate)."""
        return self._write_kubeconfig(path, token=token, client_cert=client_cert, namespace=namespace, server=server)

    def _write_kubeconfig(self, path: Path, *, token: str | None = None,
                          client_cert: tuple[Path, Path] | None = None, namespace: str | None = None,
                          server: str | None = None) -> Path:
        user: dict[str, Any] = {}
        if token:
            user["token"] = token
        if client_cert:
            user["client-certificate-data"] = base64.b64encode(client_cert[0].read_bytes()).decode()
            user["client-key-data"] = base64.b64encode(client_cert[1].read_bytes()).decode()
        context: dict[str, Any] = {"cluster": "nmcp-test", "user": "nmcp-test-user"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "nmcp-test",
            "clusters": [{"name": "nmcp-test", "cluster": {
                "server": server or self.base_url,
                "certificate-authority-data": base64.b64encode(self.ca_file.read_bytes()).decode()}}],
            "users": [{"name": "nmcp-test-user", "user": user}],
            "contexts": [{"name": "nmcp-test", "context": context}],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path


class _Shared:
    """The one API server of this pytest process, and how many fixture definitions use it."""

    api: KubeAPI | None = None
    users = 0


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A real kube-apiserver for the whole session; FAILS (never skips) when it cannot start.

    Each conftest that imports this fixture gets its own fixture definition; they all share one
    API server (started by the first, stopped after the last), so a run of several test areas
    starts it once.
    """
    if _Shared.api is None:
        api = KubeAPI(tmp_path_factory.mktemp("kube-api"))
        try:
            api.start()
        except KubeAPIError as err:
            api.stop()
            pytest.fail(str(err), pytrace=False)
        _Shared.api = api
    _Shared.users += 1
    try:
        yield _Shared.api
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.api.stop()
            _Shared.api = None
