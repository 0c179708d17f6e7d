"""Open311 GeoReport v2 shapes, pure: services and their definitions, requests,
tokens and errors as the specification shows them in JSON and in XML, and the
reading of a POSTed request's fields (no I/O: the handlers are in
:mod:`hotline.web.open311`).

Element and field names are the specification's, in its order; an absent value
is JSON ``null`` and an empty XML element.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hotline.core.appeals import AppealSummary

FORMATS = ("json", "xml")
JSON_TYPE = "application/json"
XML_TYPE = "text/xml"
LOCALES = ("uk", "en")
#: The one jurisdiction this endpoint serves (``jurisdiction_id`` may be sent or left out).
JURISDICTION_ID = "kyiv.ua"

MAX_DESCRIPTION = 4000
MAX_SHORT = 200
MAX_ADDRESS = 500
MAX_ATTRIBUTES = 50
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}")
_PHONE_JUNK = re.compile(r"[\s\-().]")
_PHONE = re.compile(r"\+?[0-9]{3,20}")
_URL = re.compile(r"https?://[^\s]{1,2040}", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"attribute\[([A-Za-z0-9_\-]{1,64})\](\[\])?")

REQUEST_FIELDS = (
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat", "long",
    "media_url",
)
SERVICE_FIELDS = ("service_code", "service_name", "description", "metadata", "type",
                  "keywords", "group")
ATTRIBUTE_FIELDS = ("variable", "code", "datatype", "required", "datatype_description",
                    "order", "description", "values")


class Open311Problem(Exception):
    """One or more errors in the standard's form: a list of ``code`` + ``description``;
    the HTTP status is the first one's code."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors) or ["error"]


# --- services ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    code: str
    datatype: str  # string, number, datetime, text, singlevaluelist, multivaluelist
    required: bool
    description_uk: str
    description_en: str
    values: tuple[tuple[str, str, str], ...] = ()  # key, name_uk, name_en
    datatype_description: str = ""

    def describe(self, locale: str) -> str:
        return self.description_uk if locale == "uk" else self.description_en


@dataclass(frozen=True)
class Service:
    code: str
    name_uk: str
    name_en: str
    group_uk: str
    group_en: str
    group_code: str
    attributes: tuple[Attribute, ...] = ()

    def name(self, locale: str) -> str:
        return self.name_uk if locale == "uk" else self.name_en


_SIZES = (("small", "невелика (до 1 м²)", "small (up to 1 m²)"),
          ("medium", "середня (1–10 м²)", "medium (1–10 m²)"),
          ("large", "велика (понад 10 м²)", "large (over 10 m²)"))
_ENTRANCE = Attribute("entrance", "string", True, "Номер під'їзду", "Entrance number",
                      datatype_description="the entrance (під'їзд) of the building, e.g. 2")
_APARTMENT = Attribute("apartment", "string", False, "Номер квартири", "Apartment number")
_TEMPERATURE = Attribute("measured_temperature", "number", False,
                         "Виміряна температура, °C", "Measured temperature, °C")
_DAMAGE = Attribute("damage_size", "singlevaluelist", False, "Розмір пошкодження",
                    "Size of the damage", values=_SIZES)

#: Questions beyond the description, per category; every service also asks the district.
EXTRA_ATTRIBUTES: Mapping[str, tuple[Attribute, ...]] = {
    "passenger_lift_out_of_order": (_ENTRANCE,),
    "freight_lift_out_of_order": (_ENTRANCE,),
    "no_entrance_lighting": (_ENTRANCE,),
    "no_hot_water": (_APARTMENT,),
    "no_cold_water": (_APARTMENT,),
    "hot_water_temperature": (_APARTMENT, _TEMPERATURE),
    "heating_temperature": (_APARTMENT, _TEMPERATURE),
    "asphalt_repair": (_DAMAGE,),
}


def district_attribute(districts: Sequence[tuple[str, str, str]]) -> Attribute:
    """``districts``: (code, name_uk, name_en). The answer routes the request."""
    return Attribute("district", "singlevaluelist", False, "Район міста", "City district",
                     values=tuple(districts),
                     datatype_description="routes the request to the district's administration")


def attributes_for(category_code: str, districts: Sequence[tuple[str, str, str]]
                   ) -> tuple[Attribute, ...]:
    return (district_attribute(districts), *EXTRA_ATTRIBUTES.get(category_code, ()))


def service_json(service: Service, locale: str) -> dict[str, Any]:
    other = service.name_en if locale == "uk" else service.name_uk
    return {
        "service_code": service.code,
        "service_name": service.name(locale),
        "description": f"{service.group_uk if locale == 'uk' else service.group_en}: "
                       f"{service.name(locale)} ({other})",
        "metadata": bool(service.attributes),
        "type": "realtime",
        "keywords": ", ".join([service.group_code, service.name_uk, service.name_en]),
        "group": service.group_uk if locale == "uk" else service.group_en,
    }


def definition_json(service: Service, locale: str) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "attributes": [
            {
                "variable": True,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description or None,
                "order": order,
                "description": a.describe(locale),
                "values": [{"key": k, "name": uk if locale == "uk" else en}
                           for k, uk, en in a.values],
            }
            for order, a in enumerate(service.attributes, start=1)
        ],
    }


# --- requests --------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def request_json(appeal: AppealSummary, locale: str) -> dict[str, Any]:
    notes = appeal.status_reason
    if appeal.duplicate_of_number:
        notes = f"duplicate of {appeal.duplicate_of_number}"
    return {
        "service_request_id": appeal.number,
        "status": appeal.open311_status,
        "status_notes": notes,
        "service_name": appeal.category_name_uk if locale == "uk" else appeal.category_name_en,
        "service_code": appeal.category_code,
        "description": appeal.text,
        "agency_responsible": (appeal.executor_name_uk or appeal.executor_name
                               if locale == "uk" else appeal.executor_name),
        "service_notice": None,
        "requested_datetime": _time(appeal.created_at),
        "updated_datetime": _time(appeal.updated_at),
        "expected_datetime": _time(appeal.due_at),
        "address": appeal.address or None,
        "address_id": None,
        "zipcode": None,
        "lat": appeal.latitude,
        "long": appeal.longitude,
        "media_url": appeal.media_url,
    }


def created_json(number: str, notice: str | None, account_id: str | None) -> dict[str, Any]:
    """POST's answer: created synchronously, so the id is known; the token is the same
    id, so a client written for the asynchronous case resolves it too."""
    return {"service_request_id": number, "token": number, "service_notice": notice,
            "account_id": account_id}


def token_json(token: str, number: str) -> dict[str, Any]:
    return {"service_request_id": number, "token": token}


# --- rendering -------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _element(parent: ET.Element, name: str, value: Any) -> None:
    child = ET.SubElement(parent, name)
    if name == "values" and isinstance(value, list):
        for item in value:
            node = ET.SubElement(child, "value")
            for key in ("key", "name"):
                ET.SubElement(node, key).text = _text(item[key])
        return
    if name == "attributes" and isinstance(value, list):
        for item in value:
            node = ET.SubElement(child, "attribute")
            for key in ATTRIBUTE_FIELDS:
                _element(node, key, item[key])
        return
    child.text = _text(value)


def to_xml(root: str, item: str | None, rows: Iterable[Mapping[str, Any]]) -> bytes:
    """``<root><item>…</item>…</root>``; with ``item`` None, one row's fields directly
    under the root (a service definition)."""
    top = ET.Element(root)
    for row in rows:
        node = ET.SubElement(top, item) if item is not None else top
        for key, value in row.items():
            _element(node, key, value)
    body: bytes = ET.tostring(top, encoding="utf-8", xml_declaration=True)
    return body


def errors_json(status: int, errors: Sequence[str]) -> list[dict[str, Any]]:
    return [{"code": status, "description": text} for text in errors]


def errors_xml(status: int, errors: Sequence[str]) -> bytes:
    return to_xml("errors", "error", errors_json(status, errors))


# --- reading a POST ------------------------------------------------------------------


@dataclass
class Submitted:
    """A POSTed request's fields once read and checked (the api_key apart)."""

    service_code: str
    description: str
    address: str
    lat: float | None
    long: float | None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    first_name: str = ""
    last_name: str = ""
    phone: str | None = None
    media_url: str | None = None
    address_id: str | None = None

    def fingerprint(self) -> str:
        """The request's content, stable across a retry (for device_id idempotency)."""
        attrs = ";".join(f"{k}={','.join(v)}" for k, v in sorted(self.attributes.items()))
        return "\x1f".join(str(x) for x in (
            self.service_code, self.description, self.address, self.lat, self.long, attrs,
            self.email, self.account_id, self.first_name, self.last_name, self.phone,
            self.media_url, self.address_id))


def _one(fields: Mapping[str, list[str]], name: str, limit: int = MAX_SHORT) -> str | None:
    values = fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise Open311Problem(400, f"{name}: given more than once")
    value = values[0].strip()
    if len(value) > limit:
        raise Open311Problem(400, f"{name}: at most {limit} characters")
    return value or None


def _coordinate(text: str | None, name: str, bound: float) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Open311Problem(400, f"{name}: not a number: {text[:30]!r}") from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise Open311Problem(400, f"{name}: must be between -{bound:g} and {bound:g}")
    return value


def read_submission(fields: Mapping[str, list[str]]) -> Submitted:
    """The fields of ``POST requests`` (every value a list, as a form gives them).
    Location: ``lat`` + ``long``, or ``address_string``, or ``address_id``."""
    service_code = _one(fields, "service_code", 64)
    if service_code is None:
        raise Open311Problem(400, "service_code: required")
    lat = _coordinate(_one(fields, "lat", 40), "lat", 90)
    lon = _coordinate(_one(fields, "long", 40), "long", 180)
    if (lat is None) != (lon is None):
        raise Open311Problem(400, "lat and long: give both or neither")
    address = _one(fields, "address_string", MAX_ADDRESS) or ""
    address_id = _one(fields, "address_id")
    if lat is None and not address and address_id is None:
        raise Open311Problem(400, "location: lat and long, address_string or address_id "
                                  "is required")
    email = _one(fields, "email", 320)
    if email is not None and not _EMAIL.fullmatch(email):
        raise Open311Problem(400, "email: not an e-mail address")
    phone = _one(fields, "phone", 40)
    if phone is not None:
        phone = _PHONE_JUNK.sub("", phone)
        if not _PHONE.fullmatch(phone):
            raise Open311Problem(400, "phone: digits with an optional leading +, 3 to 20")
    media_url = _one(fields, "media_url", 2048)
    if media_url is not None and not _URL.fullmatch(media_url):
        raise Open311Problem(400, "media_url: an http or https URL")
    attributes: dict[str, list[str]] = {}
    for name, values in fields.items():
        match = _ATTRIBUTE.fullmatch(name)
        if match is None:
            if name.startswith("attribute"):
                raise Open311Problem(400, f"{name[:80]}: expected attribute[code]")
            continue
        if len(attributes) >= MAX_ATTRIBUTES:
            raise Open311Problem(400, f"attribute: at most {MAX_ATTRIBUTES}")
        cleaned = [v.strip() for v in values if v.strip()]
        if any(len(v) > MAX_SHORT for v in cleaned):
            raise Open311Problem(400, f"attribute[{match[1]}]: at most {MAX_SHORT} characters")
        if cleaned:
            attributes.setdefault(match[1], []).extend(cleaned)
    return Submitted(
        service_code=service_code,
        description=_one(fields, "description", MAX_DESCRIPTION) or "",
        address=address, lat=lat, long=lon, attributes=attributes, email=email,
        device_id=_one(fields, "device_id"), account_id=_one(fields, "account_id"),
        first_name=_one(fields, "first_name", 100) or "",
        last_name=_one(fields, "last_name", 100) or "", phone=phone, media_url=media_url,
        address_id=address_id,
    )


def check_attributes(service: Service, given: Mapping[str, list[str]]) -> list[str]:
    """Every problem of the answers against the service's definition (empty: fine)."""
    problems = []
    known = {a.code: a for a in service.attributes}
    for code in given:
        if code not in known:
            problems.append(f"attribute[{code}]: not an attribute of service {service.code}")
    for attribute in service.attributes:
        values = given.get(attribute.code, [])
        name = f"attribute[{attribute.code}]"
        if not values:
            if attribute.required:
                problems.append(f"{name}: required ({attribute.description_en})")
            continue
        if attribute.datatype != "multivaluelist" and len(values) > 1:
            problems.append(f"{name}: one value expected")
        keys = {k for k, _, _ in attribute.values}
        for value in values:
            if attribute.datatype in ("singlevaluelist", "multivaluelist") and value not in keys:
                problems.append(f"{name}: {value[:40]!r} is not one of its values")
            if attribute.datatype == "number":
                try:
                    ok = math.isfinite(float(value))
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(f"{name}: not a number")
    return problems


def appeal_text(service: Service, submitted: Submitted) -> str:
    """What the executor reads: the description, then the answers (in Ukrainian)."""
    lines = [submitted.description or service.name_uk]
    for attribute in service.attributes:
        values = submitted.attributes.get(attribute.code)
        if not values or attribute.code == "district":
            continue
        names = {k: uk for k, uk, _ in attribute.values}
        lines.append(f"{attribute.description_uk}: "
                     f"{', '.join(names.get(v, v) for v in values)}")
    if submitted.address_id and not submitted.address:
        lines.append(f"address_id: {submitted.address_id}")
    return "\n".join(lines)
