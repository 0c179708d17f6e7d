"""What reaches the log: phone numbers masked, secrets hidden, JSON for machines."""

from __future__ import annotations

import io
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


@pytest.mark.parametrize(
    ("key", "raw", "masked"),
    [
        ("caller", "+380661112233;cpc=ordinary", "+38066*****33"),
        ("callerid", "sip:+380661112233@trunk", "+38066*****33"),
        ("caller_number", "tel:+380-66-111-22-33", "+38066*****33"),
        ("caller_name", "380661112233", "38066*****33"),
        ("calleridname", "+380 66 111 22 33", "+38066*****33"),
    ],
)
def test_number_forms_and_numeric_names_are_masked_in_log_lines(
    key: str, raw: str, masked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info")
    try:
        get_logger("tests.mask").info("call_seen", **{key: raw})
    finally:
        configure_logging("console", "info")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)[key] == masked
    assert "1112233" not in line.replace(" ", "").replace("-", "")


def test_a_real_caller_name_is_logged_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    try:
        get_logger("tests.mask").info("call_seen", caller_name="Олена Петренко")
    finally:
        configure_logging("console", "info")
    assert json.loads(capsys.readouterr().err)["caller_name"] == "Олена Петренко"


def test_logs_go_to_the_stream_given(capsys: pytest.CaptureFixture[str]) -> None:
    """`hotline demo` keeps its console for people: the lines go to its log file."""
    log_file = io.StringIO()
    configure_logging("json", "info", log_file)
    try:
        get_logger("tests.file").info("call_recorded", caller="380661112233")
    finally:
        configure_logging("console", "info")
    assert capsys.readouterr().err == ""
    [line] = log_file.getvalue().splitlines()
    assert json.loads(line)["event"] == "call_recorded" and "1112233" not in line
