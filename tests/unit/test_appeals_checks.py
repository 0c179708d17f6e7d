"""check-config covers the appeals' files: each mistake is one problem naming the
file and the key, codes checked against the taxonomy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hotline.checks import check_config
from tests.support.paths import CONFIG_DIR


@pytest.fixture
def config(tmp_path: Path) -> Path:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems(config: Path) -> list[tuple[str, str, str]]:
    return [(Path(p.file).name, p.key, p.reason) for p in check_config(config, asterisk_etc=None)]


def test_codes_unknown_to_the_taxonomy(config: Path) -> None:
    edit(config / "routing.toml", 'executor = "kyivavtodor"', 'executor = "kyivavtodr"')
    edit(config / "routing.toml", 'districts = ["obolonskyi"]', 'districts = ["obolon"]')
    edit(config / "routing.toml", 'district = "desnianskyi"', 'district = "desna"')
    edit(config / "appeals.toml", "no_cold_water = 1", "no_cold_watr = 1")
    assert problems(config) == [
        ("appeals.toml", "sla.no_cold_watr", "unknown category"),
        ("routing.toml", "executors.zhek_desnianskyi_7.district", "unknown district 'desna'"),
        ("routing.toml", "rules[1].executor", "unknown executor 'kyivavtodr'"),
        ("routing.toml", "rules[3].districts", "unknown district 'obolon'"),
    ]


def test_a_file_that_does_not_parse(config: Path) -> None:
    edit(config / "holidays.toml", 'date = "08-24"', 'date = "24-08"')
    edit(config / "appeals.toml", "reopen_days = 30", "reopen_days = \"a month\"")
    found = problems(config)
    assert [(f, k) for f, k, _ in found] == [("appeals.toml", ""), ("holidays.toml", "")]
    assert found[0][2].startswith("reopen_days: expected an integer")
    assert "holidays[8] (Independence Day): date" in found[1][2]


def test_routing_is_optional(config: Path) -> None:
    (config / "routing.toml").unlink()
    assert problems(config) == []
