"""The desk's pure parts: its configuration, its commands on the wire, member states."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_sync.desk.operators import check_presence_config, load_presence_config
from hotline.core.desk import (
    LOGIN,
    DeskCommand,
    DeskConfigError,
    DeskReply,
    Skill,
    is_dialable,
    member_interface,
    member_view,
    operator_channel,
    parse_desk_config,
    phone_variants,
)
from tests.support.paths import CONFIG_DIR

GOOD = """
wrapup_seconds = 10
wrapup_reason = "after_call_work"
[pause_reasons]
lunch = "Обід"
after_call_work = "Обробка"
"""


def test_shipped_config_reads() -> None:
    config = load_presence_config(CONFIG_DIR)
    assert {"lunch", "training", "after_call_work"} <= set(config.reason_codes)
    assert config.wrapup_reason in config.reason_codes
    assert check_presence_config(CONFIG_DIR) == []


def test_config_problems_name_their_key() -> None:
    config, problems = parse_desk_config(GOOD)
    assert config is not None and config.wrapup_seconds == 10 and problems == []
    bad = GOOD.replace("= 10", "= -1") + 'Lunch = "x"\nempty = ""\n\n[extra]\n'
    keys = {p.key for p in parse_desk_config(bad)[1]}
    assert keys == {"wrapup_seconds", "pause_reasons.Lunch", "pause_reasons.empty", "extra"}
    _, problems = parse_desk_config(GOOD.replace('"after_call_work"\n[', '"coffee"\n['))
    assert [p.key for p in problems] == ["wrapup_reason"]
    _, problems = parse_desk_config("wrapup_seconds = 0\n")
    assert [p.key for p in problems] == ["pause_reasons"]
    assert parse_desk_config("not toml [")[0] is None


def test_broken_desk_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "presence.toml").write_text(GOOD.replace('"after_call_work"\n[', '"nap"\n['))
    with pytest.raises(DeskConfigError) as info:
        load_presence_config(tmp_path)
    assert "wrapup_reason" in info.value.message
    assert [p.key for p in check_presence_config(tmp_path)] == ["wrapup_reason"]
    assert "cannot read" in check_presence_config(tmp_path / "missing")[0].reason


def test_command_and_reply_cross_the_wire_unchanged() -> None:
    command = DeskCommand(LOGIN, "olena", "PJSIP/olena", member_name="Олена",
                          skills=(Skill("housing", 0), Skill("main", 5)), id="x", deadline=1.5)
    assert DeskCommand.from_json(command.to_json()) == command
    with pytest.raises(ValueError):
        DeskCommand.from_json('{"action": "reboot", "login": "a", "interface": "b"}')
    reply = DeskReply(False, "Asterisk refused QueuePause: Interface not found", "asterisk_refused",
                      {"members": []})
    assert DeskReply.from_json(reply.to_json()) == reply


def test_phone_forms_and_interfaces() -> None:
    assert phone_variants("+380501234567") == ["+380501234567", "380501234567", "0501234567"]
    assert phone_variants("0501234567") == ["0501234567", "+380501234567", "380501234567"]
    assert phone_variants("380501234567")[1] == "+380501234567"
    assert phone_variants("1551") == ["1551"]
    assert member_interface("olena", None) == "PJSIP/olena"
    assert member_interface("olena", "Local/7@hotline-sim-operator/n").startswith("Local/")
    assert operator_channel("olena") == "hotline:desk:op:olena"
    assert is_dialable("+380501234567") and not is_dialable("050;Dial(x)")
    assert not is_dialable("12")


def test_member_view_is_what_asterisk_says() -> None:
    view = member_view({"Queue": "housing", "Location": "PJSIP/olena", "Paused": "1",
                        "PausedReason": "lunch", "Status": "1", "InCall": "0",
                        "CallsTaken": "3", "Penalty": "2"})
    assert view == {"queue": "housing", "interface": "PJSIP/olena", "paused": True,
                    "reason": "lunch", "status": "available", "in_call": False,
                    "calls_taken": 3, "penalty": 2}
    assert member_view({"Paused": "0", "PausedReason": "old"})["reason"] == ""
