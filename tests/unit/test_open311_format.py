"""The Open311 shapes and the reading of a POSTed report, in memory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from hotline.core.appeals import AppealStatus, AppealSummary
from hotline.web.open311_format import (
    Open311Problem,
    Service,
    Submitted,
    appeal_text,
    attributes_for,
    check_attributes,
    errors_xml,
    read_submission,
    request_json,
    to_xml,
)
from tests.support.open311 import REQUEST

DISTRICTS = [("holosiivskyi", "Голосіївський", "Holosiivskyi")]
LIFT = Service("passenger_lift_out_of_order", "Не працює пасажирський ліфт",
               "Passenger lift out of order", "Житлове господарство", "Housing and utilities",
               "housing", attributes_for("passenger_lift_out_of_order", DISTRICTS))


def form(**fields: str) -> dict[str, list[str]]:
    base = {"service_code": "passenger_lift_out_of_order", "lat": "50.4", "long": "30.5"}
    base.update(fields)
    return {k: [v] for k, v in base.items() if v != ""}


def test_a_report_is_read_with_its_attributes_and_phone_cleaned() -> None:
    got = read_submission(form(**{"attribute[entrance]": " 3 ", "phone": "+380 (50) 123-45-67",
                                  "description": "  Ліфт  "}))
    assert got.attributes == {"entrance": ["3"]}
    assert (got.phone, got.description, got.lat, got.long) == ("+380501234567", "Ліфт", 50.4, 30.5)


@pytest.mark.parametrize(("fields", "named"), [
    ({"service_code": ""}, "service_code"),
    ({"lat": "", "long": ""}, "location"),
    ({"long": ""}, "lat and long"),
    ({"lat": "nan"}, "lat"),
    ({"long": "181"}, "long"),
    ({"email": "a@b"}, "email"),
    ({"phone": "call me"}, "phone"),
    ({"media_url": "ftp://x/y.jpg"}, "media_url"),
    ({"attribute[a b]": "1"}, "attribute[code]"),
    ({"description": "x" * 4001}, "description"),
])
def test_bad_fields_are_named(fields: dict[str, str], named: str) -> None:
    with pytest.raises(Open311Problem) as caught:
        read_submission(form(**fields))
    assert caught.value.status == 400 and named in caught.value.errors[0]


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(Open311Problem):
        read_submission({"service_code": ["a", "b"], "address_string": ["x"]})


def test_attributes_are_checked_against_the_definition() -> None:
    assert check_attributes(LIFT, {"entrance": ["2"], "district": ["holosiivskyi"]}) == []
    problems = check_attributes(LIFT, {"district": ["atlantis", "holosiivskyi"], "x": ["1"]})
    assert any("attribute[entrance]: required" in p for p in problems)
    assert any("atlantis" in p for p in problems)
    assert any("one value expected" in p for p in problems)
    assert any("attribute[x]" in p for p in problems)


def test_the_appeal_text_carries_the_answers_in_ukrainian() -> None:
    submitted = Submitted("passenger_lift_out_of_order", "", "", None, None,
                          {"entrance": ["2"], "district": ["holosiivskyi"]}, address_id="77")
    assert appeal_text(LIFT, submitted).splitlines() == [
        "Не працює пасажирський ліфт", "Номер під'їзду: 2", "address_id: 77"]


def test_a_request_in_xml_has_the_specification_elements_in_order() -> None:
    at = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
    summary = AppealSummary(
        id=1, number="1551-2026-000001", status=AppealStatus.DONE,
        category_code="no_hot_water", category_name_uk="Відсутність ГВП",
        category_name_en="No hot water", executor_code="rda_x", executor_name="X RDA",
        executor_name_uk="X РДА", due_at=None, created_at=at, updated_at=at,
        status_reason="fixed", latitude=50.5, longitude=30.25)
    row = request_json(summary, "en")
    assert list(row) == REQUEST
    assert (row["status"], row["agency_responsible"], row["status_notes"]) == (
        "closed", "X RDA", "fixed")
    tree = ET.fromstring(to_xml("service_requests", "request", [row]))
    [node] = list(tree)
    assert [c.tag for c in node] == REQUEST
    assert node.findtext("long") == "30.25" and node.findtext("expected_datetime") == ""
    assert node.findtext("requested_datetime") == "2026-02-02T08:00:00+00:00"


def test_errors_in_xml() -> None:
    tree = ET.fromstring(errors_xml(403, ["api_key: missing"]))
    assert tree.tag == "errors"
    assert [[(c.tag, c.text) for c in e] for e in tree] == [
        [("code", "403"), ("description", "api_key: missing")]]
