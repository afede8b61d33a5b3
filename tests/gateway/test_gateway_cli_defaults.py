"""`nmcp gateway` defaults and settings: the runtime it picks, and how bad settings are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli


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

    config = Config.from_env({"NMCP_KUBE_WRITE_INTERVAL": "soon", "NMCP_UP_POLL_INTERVAL": "0"})
    with pytest.raises(ConfigError, match="NMCP_KUBE_WRITE_INTERVAL: expected a number of seconds, got 'soon'"):
        config.seconds("NMCP_KUBE_WRITE_INTERVAL", 20.0)
    assert config.seconds("NMCP_UP_POLL_INTERVAL", 1.0, allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="NMCP_UP_POLL_INTERVAL: must be positive"):
        config.seconds("NMCP_UP_POLL_INTERVAL", 1.0)
    assert config.seconds("NMCP_KUBE_PING_INTERVAL", 20.0) == 20.0
