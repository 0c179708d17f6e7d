"""How a citizen's number and a numeric caller name are shown outside the case store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hotline.core.live import call_event, call_view
from hotline.core.privacy import mask_name, mask_phone
from hotline.core.records import CallRecord

NUMBER = "380661112233"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+380661112233", "+38066*****33"),
        ("+380661112233;cpc=ordinary", "+38066*****33"),
        ("380661112233;cpc=ordinary;user=phone", "38066*****33"),
        ("sip:+380661112233@10.0.0.1:5060", "+38066*****33"),
        ("sips:380661112233@trunk.example.net;transport=tls", "38066*****33"),
        ("<sip:+380661112233@trunk;user=phone>", "+38066*****33"),
        ("SIP:+380661112233@trunk", "+38066*****33"),
        ("tel:+380661112233", "+38066*****33"),
        ("tel:+380-66-111-22-33", "+38066*****33"),
        ("tel:+380661112233;phone-context=+380", "+38066*****33"),
        ("+380 66 111-22-33", "+38066*****33"),
        ("+38 (066) 111.22.33", "+38066*****33"),
        ("(044) 123-45-67", "044*****67"),
        ("380501234567", "38050*****67"),
        ("044-123-45", "0*****45"),
        ("12345", "***45"),
    ],
)
def test_numbers_are_masked_whatever_surrounds_them(raw: str, masked: str) -> None:
    shown = mask_phone(raw)
    assert shown == masked
    assert "1112233" not in shown and "1234567" not in shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("1551", "1551"),
        ("101", "101"),
        ("sip:1551@pbx", "1551"),
        ("1551;cpc=ordinary", "1551"),
        ("*100#", "*100#"),
        ("anonymous", "anonymous"),
        ("<unknown>", "<unknown>"),
        ("", ""),
        (None, ""),
    ],
)
def test_short_numbers_and_non_numbers_stay(raw: str | None, shown: str) -> None:
    assert mask_phone(raw) == shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("380661112233", "38066*****33"),
        ("+380661112233", "+38066*****33"),
        ("+380 66 111 22 33", "+38066*****33"),
        ("066-111-22-33", "066*****33"),
        ("sip:+380661112233@trunk", "+38066*****33"),
        ("Петренко 066 111 22 33", "Петренко 066*****33"),
        ("Олена Петренко", "Олена Петренко"),
        ("Ґанна Їжак-Євтушенко", "Ґанна Їжак-Євтушенко"),
        ("ЖЕК 12", "ЖЕК 12"),
        ("1551", "1551"),
        ("", ""),
    ],
)
def test_a_caller_name_that_is_a_number_is_masked(name: str, shown: str) -> None:
    assert mask_name(name) == shown


def _call(number: str, name: str) -> CallRecord:
    return CallRecord(
        call_key="hotline-1:1714000000.1", asterisk_server="hotline-1",
        uniqueid="1714000000.1", linkedid="1714000000.1", channel="PJSIP/trunk-00000001",
        started_at=datetime(2024, 4, 25, tzinfo=UTC),
        caller_number=number, caller_name=name,
    )


@pytest.mark.parametrize("as_row", [False, True])
def test_call_view_masks_number_forms_and_numeric_names(as_row: bool) -> None:
    record = _call("+380661112233;cpc=ordinary", "380661112233")
    call: object = record
    if as_row:
        call = {"caller_number": record.caller_number, "caller_name": record.caller_name}
    view = call_view(call)
    assert view["caller_number"] == "+38066*****33"
    assert view["caller_name"] == "38066*****33"
    assert "1112233" not in repr(call_event(call))


def test_call_view_keeps_a_real_name_and_a_missing_one() -> None:
    assert call_view(_call(NUMBER, "Олена Петренко"))["caller_name"] == "Олена Петренко"
    assert call_view({"caller_number": NUMBER, "caller_name": None})["caller_name"] is None
