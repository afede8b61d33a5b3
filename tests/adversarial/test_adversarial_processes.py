"""Hostile servers and a hostile end under `nmcp up`: the control loop and the processes hold.

* a server whose spec the hooks cannot run (an idle timeout of 99999999h, schema-valid) does not
  stop the others: another server still starts and its shutdown still applies; and a pool or
  server whose sync raises is marked and skipped while the pass goes on (in-process, with the
  hooks made to fail on purpose);
* a server that crashes on one request is restarted at once for the next session, however often
  that happens, while one that cannot start keeps backing off;
* SIGKILL of nmcp (its gunicorn master and worker both) leaves no process of an npx-launched
  server behind;
* a server gets a minimal environment (no NMCP_* settings of the gateway), and the values of its
  secret variables never come back through GET .../logs.

Every wait is bounded by a failure guard (tests.support.wait_for); nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
from mcp import Client

from gateway.redaction import REDACTED, redact, secret_values
from nmcp.embedded.process import INHERITED, base_environment, environment
from nmcp.model.manifests import load
from tests.support import ROOT, VENV_BIN, wait_for
from tests.up.running import GUARD, call_tool, descendants, nmcp_up, pool, time_server, write

PROBE = Path(__file__).with_name("probe_server.py")


def probe_server(name: str, *, spec: str = "") -> str:
    """An MCPServer running probe_server.py with this Python; `spec` adds lines under spec."""
    text = f"""apiVersion: nmcp.nwrx.io/v1
kind: MCPServer
metadata: {{name: {name}}}
spec:
  command: [{sys.executable}, {PROBE}]
"""
    for line in spec.strip("\n").splitlines():
        text += f"  {line}\n"
    return text


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _marked(marker: str) -> set[int]:
    """Every live process on the machine whose environment carries `marker` (inherited by all a server starts)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _environ(int(entry)).get("PROBE_MARK") == marker:
            try:
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                found.add(int(entry))
    return found


def _call(url: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """One tool call through a fresh session; the exception if it fails."""
    async def main() -> Any:
        with anyio.fail_after(GUARD):
            async with Client(url) as client:
                return await client.call_tool(tool, arguments or {})
    try:
        return anyio.run(main)
    except Exception as err:  # the client's errors come wrapped in exception groups
        return err


# --- the control loop ------------------------------------------------------------------------------


def test_a_server_the_hooks_cannot_run_does_not_stop_the_others(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(), probe_server("wedge", spec="idleTimeout: 99999999h"),
          time_server("time"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        up.post("wedge", "request")  # before the fix: every pass failed from here on
        wedged = up.wait_phase("wedge", "Degraded")
        assert wedged["reason"] == "InvalidSpec"
        assert wedged["message"].startswith("spec.idleTimeout: must be at most 8760h")
        assert isinstance(_call(up.mcp_url("wedge"), "echo", {"text": "x"}), Exception)  # refused, at once

        result = call_tool(up.mcp_url("time"), "get_current_time", {"timezone": "UTC"})
        assert json.loads(result.content[0].text)["timezone"] == "UTC"
        up.post("time", "shutdown")
        assert up.wait_phase("time", "Idle")["reason"] == "StoppedByRequest"
        assert up.server("wedge")["phase"] == "Degraded"
        assert "reconcile pass failed" not in up.log()
        assert requests.get(f"{up.base}/readyz", timeout=GUARD).status_code == 200


def test_a_manifest_nested_too_deeply_is_a_problem_naming_its_file_and_the_others_load(tmp_path: Path) -> None:
    for depth in (400, 5000):
        deep = write(tmp_path, "deep.yaml", probe_server("deep", spec=f"securityContext: {'[' * depth}{']' * depth}"))
        write(tmp_path, "fine.yaml", pool(), time_server("fine"))
        result = load([tmp_path])
        assert [m.name for m in result.manifests] == ["default", "fine"]
        (problem,) = result.problems
        assert problem.source == str(deep)
        assert len(str(problem)) < 500  # the value is not copied into the message


RECONCILE_PROBE = """
import json, sys, time
from gevent import monkey
monkey.patch_all()
import gevent
from hooks import sync
from nmcp.embedded.reconcile import Reconciler
from nmcp.model.resources import ANN_REQUESTED_AT, ANN_STOP_REQUESTED_AT, format_time_precise

real_server, real_pool = sync.sync_server, sync.sync_pool

def sync_server(request, now):
    if request["parent"]["metadata"]["name"] == "cursed":
        raise OverflowError("date value out of range")
    return real_server(request, now)

def sync_pool(request, now):
    if request["parent"]["metadata"]["name"] == "cursed-pool":
        raise OverflowError("date value out of range")
    return real_pool(request, now)

sync.sync_server, sync.sync_pool = sync_server, sync_pool
loop = Reconciler([sys.argv[1]], poll_interval=0)
loop.start()

def phase(name):
    status = loop.store.get("MCPServer", "default/" + name)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    return status["phase"], ready["reason"], ready["message"]

def wait(name, wanted):
    for _ in range(600):  # a failure guard: 60 s
        if phase(name)[0] == wanted:
            return phase(name)
        loop.wait_change(0.1)
    raise SystemExit(f"{name} never became {wanted}: {phase(name)}")

now = lambda: format_time_precise(loop.clock())
for name in ("good", "cursed", "stranded"):
    loop.annotate("default/" + name, {ANN_REQUESTED_AT: now()})
out = {"good": wait("good", "Ready"), "cursed": wait("cursed", "Degraded")}
loop.annotate("default/good", {ANN_STOP_REQUESTED_AT: now()})
out["good-stopped"] = wait("good", "Idle")
pool = loop.store.get("MCPPool", "default/cursed-pool")["status"]
out["cursed-pool"] = next(c for c in pool["conditions"] if c["type"] == "Ready")
out["stranded"] = phase("stranded")
out["passes"] = loop.passes_completed
out["last_error"] = loop.last_error
loop.close()
print(json.dumps(out))
"""


def test_a_pool_or_server_whose_sync_raises_is_marked_and_the_pass_goes_on(tmp_path: Path) -> None:
    sleeper = f"[{sys.executable}, -c, 'import time; time.sleep(300)']"
    write(tmp_path, "all.yaml", pool(), pool("cursed-pool"),
          time_server("good").replace("[mcp-server-time]", sleeper).replace("args: [--local-timezone=UTC]", ""),
          time_server("cursed").replace("[mcp-server-time]", sleeper),
          time_server("stranded", pool="cursed-pool").replace("[mcp-server-time]", sleeper))
    run = subprocess.run([str(VENV_BIN / "python"), "-c", RECONCILE_PROBE, str(tmp_path)], check=False, cwd=ROOT,
                         capture_output=True, text=True, timeout=GUARD * 2)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["good"][0] == "Ready" and out["good-stopped"][:2] == ["Idle", "StoppedByRequest"]
    assert out["cursed"][:2] == ["Degraded", "ReconcileFailed"]
    assert "OverflowError: date value out of range" in out["cursed"][2]
    assert (out["cursed-pool"]["status"], out["cursed-pool"]["reason"]) == ("False", "ReconcileFailed")
    assert out["stranded"][0] == "Requested"  # its pool cannot admit it, and says why; nothing crashed
    assert out["last_error"] == ""  # the pass itself succeeded: the gateway stays ready
    # Logged once with its traceback, not once per pass.
    assert run.stderr.count("MCPServer default/cursed: reconcile failed") == 1, run.stderr[-3000:]


# --- crash loops -------------------------------------------------------------------------------------


def test_a_server_that_crashes_on_one_request_is_restarted_at_once_for_the_next_session(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(), probe_server("fragile"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        url = up.mcp_url("fragile")
        # Before the fix the second crash in a row refused every session for 10 s, the third for 20 s...
        for round_ in range(4):
            crashed = _call(url, "crash")
            assert isinstance(crashed, Exception) or crashed.is_error, crashed  # that call is lost
            served = _call(url, "echo", {"text": f"round {round_}"})
            assert not isinstance(served, Exception), f"round {round_}: {served!r}\n{up.log()[-3000:]}"
            assert served.content[0].text == f"round {round_}"
        assert up.log().count("exited with status 3") >= 4
        assert "CrashLoopBackOff" not in up.log()


def test_a_server_that_cannot_start_still_backs_off(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(), probe_server("broken").replace(str(PROBE), "/nonexistent/probe.py"),
          # Schema-valid, and no program can be run with it: a NUL byte in the command.
          probe_server("nul").replace(f"[{sys.executable}, {PROBE}]", '["probe\\0server"]'))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        up.post("broken", "request")
        up.post("nul", "request")
        degraded = up.wait_phase("broken", "Degraded")
        assert degraded["reason"] == "CrashLoopBackOff"  # it never answered: exits in a row back off
        unrunnable = up.wait_phase("nul", "Degraded")
        assert unrunnable["reason"] == "RunContainerError"
        assert "invalid command" in unrunnable["message"]


# --- process hygiene ---------------------------------------------------------------------------------


def test_sigkill_of_nmcp_leaves_no_process_of_an_npx_server_behind(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    # `everything` as examples/local/everything.yaml runs it; `wrapped` is the same behind a start
    # script that leaves a helper running in the background, which neither the parent-death
    # signal (it reaches the direct child only) nor the end of stdin ever reaches.
    write(tmp_path, "servers.yaml", pool(), f"""apiVersion: nmcp.nwrx.io/v1
kind: MCPServer
metadata: {{name: everything}}
spec:
  command: [npx, --no-install, mcp-server-everything]
  args: [stdio]
  env: [{{name: PROBE_MARK, value: "{marker}"}}]
""", f"""apiVersion: nmcp.nwrx.io/v1
kind: MCPServer
metadata: {{name: wrapped}}
spec:
  command: [sh, -c, 'sleep 300 & exec npx --no-install mcp-server-everything stdio']
  env: [{{name: PROBE_MARK, value: "{marker}"}}]
""")
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log", cwd=ROOT) as up:
        for name in ("everything", "wrapped"):
            echoed = call_tool(up.mcp_url(name), "echo", {"message": f"{name} before the kill"})
            assert f"{name} before the kill" in echoed.content[0].text
        started = _marked(marker)
        commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in started}
        assert sum(c.startswith(b"node ") for c in commands.values()) == 2, commands  # npx's node, of each
        assert any(c.startswith(b"sleep") for c in commands.values()), commands
        everything = descendants(up.proc.pid)
        workers = [pid for pid in everything if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   and pid not in started]
        # kill -9 of nmcp: its master and its worker at once, nothing orderly runs.
        for pid in [up.proc.pid, *workers]:
            os.kill(pid, signal.SIGKILL)
        up.proc.wait(timeout=GUARD)
        wait_for(lambda: not _marked(marker), "every process of both servers to exit")
        wait_for(lambda: not any(_state(pid) not in ("Z", "X") for pid in everything),
                 "every process nmcp started (the watchdog too) to exit")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


# --- secrets -----------------------------------------------------------------------------------------


def test_a_server_gets_a_minimal_environment_and_its_secrets_never_reach_the_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token, password = f"tok-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("NMCP_TEST_SECRET_SETTING", "gateway-only-value")
    monkeypatch.setenv("DB_PASSWORD", password)  # handed over by name, through valueFrom
    monkeypatch.setenv("UNRELATED_CLOUD_KEY", "never-passed")
    write(tmp_path, "servers.yaml", pool(), probe_server("leaky", spec=f"""
env:
  - {{name: API_TOKEN, value: "{token}"}}
  - {{name: DB_PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}
  - {{name: NMCP_TEST_SECRET_SETTING, valueFrom: {{secretKeyRef: {{name: x, key: y}}}}}}
  - {{name: GREETING, value: visible-value}}
  - {{name: PROBE_PRINT, value: "API_TOKEN,DB_PASSWORD,GREETING"}}
"""))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        result = call_tool(up.mcp_url("leaky"), "environment", {})
        env = json.loads(result.content[0].text)
        assert not [name for name in env if name.startswith("NMCP_")], env
        assert "UNRELATED_CLOUD_KEY" not in env
        manifest = {"API_TOKEN", "DB_PASSWORD", "GREETING", "PROBE_PRINT", "MCP_SERVER_NAME", "MCP_SERVER_POOL"}
        inherited = {name for name in env if name not in manifest}
        assert all(name in INHERITED or name.startswith("LC_") for name in inherited), inherited
        assert (env["API_TOKEN"], env["DB_PASSWORD"]) == (token, password)  # the server still gets them

        def started() -> str | None:
            text = requests.get(f"{up.base}/api/v1/servers/leaky/logs", timeout=GUARD).text
            return text if "GREETING=" in text else None

        logs = wait_for(started, "the server's start-up lines in its log")
        assert token not in logs and password not in logs
        assert f"API_TOKEN={REDACTED}" in logs and f"DB_PASSWORD={REDACTED}" in logs
        assert "GREETING=visible-value" in logs  # only secrets are redacted
        assert token not in up.log() and password not in up.log()  # nor in nmcp's own log


def test_the_redaction_rule_and_the_inherited_environment() -> None:
    env = [{"name": "API_TOKEN", "value": "tok-123456"}, {"name": "db_password", "value": "pw-abcdef"},
           {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
           {"name": "SHORT_KEY", "value": "abc"}, {"name": "GREETING", "value": "hello world"}]
    resolved = {"API_TOKEN": "tok-123456", "db_password": "pw-abcdef", "FROM_SECRET": "resolved-secret",
                "SHORT_KEY": "abc", "GREETING": "hello world"}
    # Local runtimes know every value; Kubernetes only the literal ones (the kubelet resolves valueFrom).
    assert set(secret_values(env, resolved)) == {"tok-123456", "pw-abcdef", "resolved-secret"}
    assert set(secret_values(env)) == {"tok-123456", "pw-abcdef"}
    assert redact("token tok-123456, and tok-123456789", ("tok-123456789", "tok-123456")) == \
        f"token {REDACTED}, and {REDACTED}"
    assert redact("hello world", secret_values(env, resolved)) == "hello world"
    inherited = base_environment({"PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "NMCP_BIND": "x",
                                  "AWS_SECRET_ACCESS_KEY": "y", "KUBECONFIG": "z"})
    assert inherited == {"PATH": "/bin", "HOME": "/root", "LC_ALL": "C"}
    assert environment([{"name": "NMCP_BIND", "valueFrom": {}}, {"name": "OTHER", "valueFrom": {}}],
                       {"NMCP_BIND": "x", "OTHER": "y"}) == {"OTHER": "y"}
