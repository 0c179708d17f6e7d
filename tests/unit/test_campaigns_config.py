"""The campaigns' topics file and the confirmation link's token."""

from __future__ import annotations

import pytest

from crm_sync.campaigns import (
    CampaignsConfigError,
    ConfirmLinks,
    load_campaigns_config,
    parse_config,
)
from crm_sync.notifications.optout import OptOutLinks
from tests.support.paths import CONFIG_DIR


def test_the_shipped_topics_load_and_only_emergencies_skip_the_quiet_hours() -> None:
    config = load_campaigns_config(CONFIG_DIR)
    assert {"road_closures", "emergencies", "outages", "blood_donors"} <= set(config.topics)
    assert {t.code for t in config.topics.values() if t.urgent} == {"emergencies"}
    assert "{url}" in config.confirm_uk and "{url}" in config.confirm_en


@pytest.mark.parametrize("data", [
    {},
    {"topics": {"x": {"uk": "Х"}}},
    {"topics": {"x": {"uk": "Х", "en": "X"}}, "settings": {"batch_size": 0}},
])
def test_a_bad_topics_file_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(CampaignsConfigError):
        parse_config(data)


def test_a_confirmation_token_is_no_opt_out_token_and_the_other_way_round() -> None:
    confirm, opt_out = ConfirmLinks(b"s", "https://x"), OptOutLinks(b"s", "https://x")
    assert confirm.valid(7, confirm.token(7)) and not confirm.valid(8, confirm.token(7))
    assert not confirm.valid(7, opt_out.token(7)) and not opt_out.valid(7, confirm.token(7))
    assert ConfirmLinks(b"other", "https://x").token(7) != confirm.token(7)
