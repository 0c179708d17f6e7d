"""The simulator's callers press what the catalogue's menu offers, weighted like
the city's calls."""

from __future__ import annotations

import random

import pytest

from crm_sync.taxonomy import load_taxonomy
from hotline.devtools.simulator import menu_choices, random_citizen
from ivr.menu import load_catalogue
from tests.support.paths import CONFIG_DIR


def test_menu_choices_follow_the_catalogue_and_the_spheres_shares() -> None:
    catalogue = load_catalogue(CONFIG_DIR)
    choices = dict(menu_choices(catalogue, load_taxonomy(CONFIG_DIR).spheres))
    assert choices.keys() == catalogue.by_digit().keys()
    assert choices["1"] == pytest.approx(83.4)  # housing, as in Kyiv's 2017 figures
    # the catch-all takes the spheres without a queue of their own
    assert choices["0"] == pytest.approx(1.6 + 1.3 + 1.1 + 1.1 + 0.8 + 0.8 + 0.6)


def test_random_citizens_press_only_offered_digits() -> None:
    rng = random.Random(7)
    choices = [("4", 1.0), ("9", 3.0)]
    pressed = {random_citizen(rng, choices).digits for _ in range(200)}
    assert pressed == {"", "4", "9"}  # "": hung up during the greeting
