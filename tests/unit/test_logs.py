"""What reaches the log: phone numbers masked, secrets hidden, JSON for machines."""

from __future__ import annotations

import json

import pytest

from hotline.core.logs import configure_logging, get_logger

# bound at import time, before configure_logging: must still mask
EARLY = get_logger("tests.early", uniqueid="hotline-1-1795881958.1")


def test_json_lines_mask_phones_and_hide_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    try:
        EARLY.info("call_started", caller="380501234567", secret="hunter2", linkedid="x.1")
        get_logger("tests.late").bind(phone="+380441234567").info("citizen_found")
    finally:
        configure_logging("console", "info")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "call_started"
    assert lines[0]["caller"] == "38050*****67"
    assert lines[0]["secret"] == "***"
    assert lines[0]["uniqueid"] == "hotline-1-1795881958.1"
    assert lines[1]["phone"] == "+38044*****67"
    assert "380501234567" not in json.dumps(lines)


def test_level_filter(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "warning")
    try:
        get_logger("tests.level").info("quiet")
        get_logger("tests.level").warning("loud")
    finally:
        configure_logging("console", "info")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["loud"]
