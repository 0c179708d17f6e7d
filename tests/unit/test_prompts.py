"""Prompts from text: the menu sentence follows the menu, files are real audio."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from hotline.checks import check_config
from hotline.devtools.prompts import (
    PromptError,
    PromptSet,
    load_prompts,
    menu_sentence,
    render_prompts,
)
from ivr.menu import IvrConfigError, check_prompts, load_ivr_config
from tests.support.paths import CONFIG_DIR


def test_menu_sentence_follows_the_configured_options() -> None:
    config = load_ivr_config(CONFIG_DIR)
    sentence = menu_sentence(config)
    for digit, option in config.options.items():
        assert f"{option.label_uk} — натисніть {digit}." in sentence
    assert sentence.rstrip().endswith("натисніть 0.")  # the operator option comes last


def test_shipped_prompts_cover_what_the_ivr_plays() -> None:
    config = load_ivr_config(CONFIG_DIR)
    prompts = load_prompts(CONFIG_DIR)
    ours = {p for p in (*config.greeting, config.menu_prompt, config.invalid_prompt)
            if p.startswith("hotline/")}
    assert ours <= prompts.texts.keys()
    assert "{options}" not in prompts.texts["hotline/menu"]
    assert prompts.language == "uk"


def test_render_makes_8khz_mono_wav_once(tmp_path: Path) -> None:
    prompts = PromptSet("uk", "uk", 160, {"hotline/test": "Перевірка звуку."})
    assert render_prompts(prompts, tmp_path) == ["hotline/test"]
    target = tmp_path / "uk" / "hotline" / "test.wav"
    with wave.open(str(target)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() > 8000 * 0.5  # at least half a second of speech
    assert render_prompts(prompts, tmp_path) == []  # unchanged text: nothing to do
    changed = PromptSet("uk", "uk", 160, {"hotline/test": "Інший текст."})
    assert render_prompts(changed, tmp_path) == ["hotline/test"]


def test_menu_sentence_follows_the_catalogue(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path, dirs_exist_ok=True)
    with (tmp_path / "queues.toml").open("a") as fh:
        fh.write('[queues.health]\ndigit = "4"\nlabel_uk = "Охорона здоров\'я"\n'
                 'label_en = "Healthcare"\n')
    assert "Охорона здоров'я — натисніть 4." in load_prompts(tmp_path).texts["hotline/menu"]


def test_empty_text_is_refused(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "prompts.toml").write_text('[text]\n"hotline/menu" = " "\n')
    with pytest.raises(IvrConfigError, match=r"prompts\.toml: text\.\"hotline/menu\": "):
        load_prompts(tmp_path)


@pytest.mark.parametrize(
    ("text", "file", "key"),
    [
        ('[text]\n"hotline/menu" = "{options}"\n"hotline/invalid" = "Ні."\n', "ivr.toml",
         "menu.greeting[1]"),  # the greeting has no words: no sound file would be made
        ('speed = 5000\n[text]\n"hotline/greeting" = "Так."\n"hotline/menu" = "{options}"\n'
         '"hotline/invalid" = "Ні."\n', "prompts.toml", "speed"),
        ('[text]\n"vm-sorry" = "Ні."\n"hotline/greeting" = "Так."\n"hotline/menu" = "{options}"'
         '\n"hotline/invalid" = "Ні."\n', "prompts.toml", "text.vm-sorry"),
    ],
)
def test_prompt_problems_name_file_and_key(text: str, file: str, key: str) -> None:
    config = load_ivr_config(CONFIG_DIR)
    menu = {k: v for k, v in config.prompts().items() if k.startswith("menu.")}
    _, problems = check_prompts(text, menu)
    assert [(p.file, p.key) for p in problems] == [(file, key)]


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(PromptError, match="apt-get install espeak-ng sox"):
        render_prompts(PromptSet("uk", "uk", 150, {"x": "y"}), tmp_path)


def test_every_prompt_needs_both_languages(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path, dirs_exist_ok=True)
    text = (tmp_path / "prompts.toml").read_text()
    text = text.replace('"hotline/survey/thanks" = "Thank you for your rating! Goodbye."\n', "")
    text = text.replace('"hotline/month/year" = "року"\n', "")
    (tmp_path / "prompts.toml").write_text(text)
    found = {(Path(p.file).name, p.key) for p in check_config(tmp_path, asterisk_etc=None)}
    assert ("prompts.toml", 'en.text."hotline/survey/thanks"') in found
    assert ("prompts.toml", 'text."hotline/month/year"') in found  # "року" of a due date
    with pytest.raises(IvrConfigError, match="and 1 more problem"):
        load_prompts(tmp_path)


def test_shipped_prompts_speak_english_too() -> None:
    prompts = load_prompts(CONFIG_DIR)
    english = prompts.translations["en"]
    assert english.voice == "en"
    assert "For housing and utilities, press 1." in english.texts["hotline/menu"]
    assert english.texts["hotline/language_offer"] == "For English, press 9."
    assert prompts.texts["hotline/language_offer"] == "Українською — натисніть 9."
    assert prompts.texts["hotline/category/no_hot_water"] == "Відсутність ГВП"
    assert english.texts["hotline/category/no_hot_water"] == "No hot water"


def test_english_prompts_land_inside_the_chroot(tmp_path: Path) -> None:
    """Debian's sounds/en is an absolute link: followed in the tree, never on the host."""
    sounds = tmp_path / "usr" / "share" / "asterisk" / "sounds"
    (tmp_path / "usr" / "share" / "asterisk" / "sounds" / "en_US_f_Allison").mkdir(parents=True)
    (sounds / "en").symlink_to("/usr/share/asterisk/sounds/en_US_f_Allison")
    english = PromptSet("en", "en", 160, {"hotline/test": "Sound check."})
    prompts = PromptSet("uk", "uk", 160, {"hotline/test": "Перевірка."}, {"en": english})
    assert render_prompts(prompts, sounds, root=tmp_path) == ["hotline/test", "en:hotline/test"]
    assert (sounds / "en_US_f_Allison" / "hotline" / "test.wav").is_file()
