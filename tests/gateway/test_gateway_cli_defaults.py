"""`nmcp gateway` defaults and settings: the runtime it picks, and how bad settings are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmcp import run as cli


@pytest.mark.parametrize(("host", "token", "expected"), [
    pytest.param("10.0.0.1", True, "kubernetes", id="in-a-pod"),
    pytest.param("", True, "local", id="no-service-host"),
    pytest.param("10.0.0.1", False, "local", id="no-service-account"),
])
def test_default_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str, token: bool,
                         expected: str) -> None:
    token_file = tmp_path / "token"
    if token:
        token_file.write_text("a-token")
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_TOKEN", token_file)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    assert cli.default_runtime() == expected


def test_runtime_durations_name_a_bad_setting() -> None:
    from gateway.config import Config, ConfigError

    with pytest.raises(ConfigError, match="NMCP_KUBE_WRITE_INTERVAL: expected a number of seconds, got 'soon'"):
        Config.from_env({"NMCP_KUBE_WRITE_INTERVAL": "soon"})
    assert Config.from_env({"NMCP_UP_POLL_INTERVAL": "0"}).up_poll_interval == 0.0
    with pytest.raises(ConfigError, match="NMCP_UP_POLL_INTERVAL: must be zero or more"):
        Config.from_env({"NMCP_UP_POLL_INTERVAL": "-1"})
    with pytest.raises(ConfigError, match="NMCP_RUNTIME: expected one of local, kubernetes, got 'moon'"):
        Config.from_env({"NMCP_RUNTIME": "moon"})
    assert Config.from_env({}).kube_ping_interval == 20.0
