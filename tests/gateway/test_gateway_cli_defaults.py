"""`nmcp gateway` picks the kubernetes runtime inside a cluster and the local one elsewhere."""

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
