"""`vigil incidents show`: what bad input and an unreachable remediator get."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.remediator import incidents_cli

from vigil.procs import free_port


def test_unreachable_remediator_and_missing_token_file_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert incidents_cli.main(["show", "1", "--url", url]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert incidents_cli.main(["show", "1", "--url", url, "--admin-token-file",
                               str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err


def test_render_text_without_intelligence_data() -> None:
    out = incidents_cli.render_text({"incident": {"id": 7, "alertname": "A", "state": "open",
                                                  "opened_at": "t", "procedure": None, "reason": ""},
                                     "group": None, "root_cause": None, "recommendation": None,
                                     "similar": [], "impact": None})
    assert out.startswith("incident #7  A  state=open") and "not measured yet" in out
