"""Helpers for the Open311 tests: the specification's element names, reading its
XML with the standard library, a valid report to start from."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

#: GeoReport v2's names, in its order.
SERVICE = ["service_code", "service_name", "description", "metadata", "type", "keywords",
           "group"]
ATTRIBUTE = ["variable", "code", "datatype", "required", "datatype_description", "order",
             "description", "values"]
REQUEST = ["service_request_id", "status", "status_notes", "service_name", "service_code",
           "description", "agency_responsible", "service_notice", "requested_datetime",
           "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
           "long", "media_url"]
CREATED = ["service_request_id", "token", "service_notice", "account_id"]
BASE = "/open311/v2"


def xml_rows(body: bytes | str, root: str, item: str) -> list[dict[str, Any]]:
    """``<root><item><field>…</field>…</item>…</root>`` as dicts in document order;
    asserts the root's and the items' names."""
    tree = ET.fromstring(body)
    assert tree.tag == root, tree.tag
    rows = []
    for node in tree:
        assert node.tag == item, node.tag
        rows.append({child.tag: (child.text or "") for child in node})
    return rows


def xml_errors(body: bytes | str) -> list[tuple[str, str]]:
    return [(row["code"], row["description"]) for row in xml_rows(body, "errors", "error")]


def report(key: str, **extra: str) -> dict[str, str]:
    """A valid report of a lift out of order in Holosiivskyi district."""
    fields = {
        "api_key": key, "service_code": "passenger_lift_out_of_order",
        "lat": "50.3905", "long": "30.5120", "address_string": "вул. Тестова, 1",
        "attribute[entrance]": "2", "attribute[district]": "holosiivskyi",
        "description": "Ліфт стоїть третій день", "first_name": "Олена",
        "last_name": "Коваль", "phone": "+380 50 123 45 67",
    }
    fields.update(extra)
    return {k: v for k, v in fields.items() if v != ""}
