"""The in-call panel's files under check-config (on copies of the shipped config/):
each fault is one problem naming the file and the key or line; and what the panel
computes from them: the district of an address, the directory's matches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crm_sync.desk.config import DeskConfig, load_desk_config
from hotline.checks import check_config
from hotline.core.desk import DISPOSITIONS
from tests.support.paths import CONFIG_DIR


@pytest.fixture
def config(tmp_path: Path) -> Path:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk_config(CONFIG_DIR)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def found(config: Path) -> list[tuple[str, str]]:
    return [(Path(p.file).name, p.key) for p in check_config(config, asterisk_etc=None)]


def test_the_shipped_files_have_a_label_for_every_disposition(desk: DeskConfig) -> None:
    assert list(desk.dispositions) == list(DISPOSITIONS)
    assert len(desk.streets) >= 40 and len(desk.directory) >= 5


def test_a_disposition_without_a_label_and_one_unknown(config: Path) -> None:
    edit(config / "desk.toml", 'abusive = "', 'insulting = "')
    assert found(config) == [("desk.toml", "dispositions.abusive"),
                             ("desk.toml", "dispositions.insulting")]


def test_keywords_of_an_unknown_category(config: Path) -> None:
    edit(config / "desk.toml", "no_hot_water = [", "no_hot_wter = [")
    assert found(config) == [("desk.toml", "taxonomy.keywords.no_hot_wter")]


def test_a_street_of_an_unknown_district_and_a_street_twice(config: Path) -> None:
    edit(config / "streets.csv", "вул. Липська,pecherskyi", "вул. Липська,pechersk")
    edit(config / "streets.csv", "вул. Хрещатик,shevchenkivskyi",
         "вул. Хрещатик,shevchenkivskyi\nХрещатик вул.,pecherskyi")
    assert found(config) == [("streets.csv", "line 28: district"),
                             ("streets.csv", "line 48: street")]


def test_a_missing_street_list(config: Path) -> None:
    (config / "streets.csv").unlink()
    assert found(config) == [("streets.csv", "")]


def test_directory_entries_are_checked(config: Path) -> None:
    edit(config / "directory.toml", 'phone = "104"', 'phone = "call us"')
    edit(config / "directory.toml", 'name = "Швидка медична допомога"\n', "")
    edit(config / "directory.toml", 'hours = "цілодобово"\nkeywords = ["поліція"',
         'hour = "цілодобово"\nkeywords = ["поліція"')
    assert found(config) == [("directory.toml", "services[1].name"),
                             ("directory.toml", "services[2].phone"),
                             ("directory.toml", "services[6].hour")]


def test_the_district_comes_from_the_street(desk: DeskConfig) -> None:
    def district(address: str) -> str | None:
        street = desk.district_of(address)
        return street.district if street else None

    assert district("вул. Драйзера, 10, кв. 5") == "desnianskyi"
    assert district("Драйзера 10") == "desnianskyi"  # no street type
    assert district("вулиця Драйзерра 10") == "desnianskyi"  # a typo
    assert district("Оболонський проспект, 7") == "obolonskyi"
    assert district("вул. Левка Лук’яненка 3") == "obolonskyi"  # another apostrophe
    assert district("вул. Марсіанська 1") is None
    assert district("") is None
    assert [s.name for s in desk.find_streets("хрещ")] == ["вул. Хрещатик"]


def test_the_directory_matches_words_with_other_endings(desk: DeskConfig) -> None:
    assert [s.phone for s in desk.search_directory("газу")] == ["104"]
    assert "Київський міський центр соціальних виплат" in [
        s.name for s in desk.search_directory("субсидії")]
    assert desk.search_directory("") == list(desk.directory)
