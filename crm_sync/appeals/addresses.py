"""Addresses and places, compared the way people write them (pure).

``normalise_address`` makes "вул. Хрещатик, 22, кв. 5" and "вулиця  Хрещатик 22"
the same key: lower case, one kind of apostrophe, street-type abbreviations
spelled out, punctuation and the flat number dropped. The flat is dropped on
purpose: the problems people report (hot water, lifts, lighting in the
entrance) belong to the building, so two flats of one building report one
problem.
"""

from __future__ import annotations

import math
import re

from hotline.core.errors import InvalidInput

EARTH_RADIUS_M = 6_371_008.8

_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "`": "'", "‘": "'", "ʹ": "'"})
#: Street types, as people abbreviate them (Ukrainian, some Russian, English).
_STREET_TYPES = {
    "вул": "вулиця", "вулиця": "вулиця", "ул": "вулиця", "улица": "вулиця",
    "street": "вулиця", "st": "вулиця",
    "просп": "проспект", "пр-т": "проспект", "пр": "проспект", "проспект": "проспект",
    "prosp": "проспект", "avenue": "проспект", "ave": "проспект",
    "пров": "провулок", "провулок": "провулок", "пер": "провулок", "lane": "провулок",
    "бульв": "бульвар", "бул": "бульвар", "б-р": "бульвар", "бульвар": "бульвар",
    "blvd": "бульвар", "boulevard": "бульвар",
    "пл": "площа", "площа": "площа", "square": "площа", "sq": "площа",
    "наб": "набережна", "набережна": "набережна",
    "узв": "узвіз", "узвіз": "узвіз",
    "шосе": "шосе", "ш": "шосе",
}
#: Words that say nothing about the place: the city, "building".
_NOISE = {"м", "місто", "київ", "kyiv", "kiev", "киев", "україна", "ukraine",
          "буд", "будинок", "д", "дом", "building", "bldg"}
#: A flat or office number and everything after it.
_FLAT = re.compile(r"[\s,]+(кв|квартира|kv|apt|flat|офіс|оф)\.?\s*\S*.*$", re.IGNORECASE)
#: "21-А", "21 а" → "21а": a building's letter belongs to its number.
_HOUSE_LETTER = re.compile(r"(\d)[\s-]?([a-zа-яґєії])(?![a-zа-яґєії])")
_TOKEN = re.compile(r"[0-9a-zа-яґєії'-]+(?:/[0-9a-zа-яґєії]+)?")


def normalise_address(address: str) -> str:
    """A comparison key for an address; ``""`` for an empty one."""
    text = address.translate(_APOSTROPHES).lower().replace("ё", "е")
    text = _FLAT.sub("", text)
    text = _HOUSE_LETTER.sub(r"\1\2", text)
    words: list[str] = []
    street_type = ""
    for token in _TOKEN.findall(text):
        token = token.strip("-'")
        if not token or token in _NOISE:
            continue
        if token in _STREET_TYPES:
            # "Хрещатик вул." and "вул. Хрещатик" are one street
            street_type = street_type or _STREET_TYPES[token]
            continue
        words.append(token)
    return " ".join([street_type, *words] if street_type else words)


def address_has_prefix(address_norm: str, prefix_norm: str) -> bool:
    """``prefix_norm`` is the start of ``address_norm`` at a word boundary
    ("вулиця хрещатик" matches "вулиця хрещатик 22", not "вулиця хрещатикова 1")."""
    if not prefix_norm:
        return False
    return address_norm == prefix_norm or address_norm.startswith(prefix_norm + " ")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for a city)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lon, max_lon) around a point: an index-friendly
    first filter before the exact distance."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    dlon = math.degrees(radius_m / (EARTH_RADIUS_M * max(math.cos(math.radians(lat)), 1e-6)))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def check_point(latitude: float | None, longitude: float | None) -> tuple[float, float] | None:
    """Both or neither, within range; the error names the field."""
    if latitude is None and longitude is None:
        return None
    if latitude is None or longitude is None:
        missing = "latitude" if latitude is None else "longitude"
        raise InvalidInput(f"{missing}: required when the other coordinate is given",
                           details={"field": missing})
    for name, value, limit in (("latitude", latitude, 90.0), ("longitude", longitude, 180.0)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not (
            math.isfinite(value) and -limit <= value <= limit
        ):
            raise InvalidInput(f"{name}: expected a number from {-limit:g} to {limit:g}, "
                               f"got {value!r}", details={"field": name})
    return float(latitude), float(longitude)
