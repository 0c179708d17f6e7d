"""Prompts from text: the menu sentence follows the menu, files are real audio."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from hotline.devtools.prompts import (
    PromptError,
    PromptSet,
    load_prompts,
    menu_sentence,
    render_prompts,
)
from hotline.settings import CONFIG_DIR
from ivr.menu import load_ivr_config


def test_menu_sentence_follows_the_configured_options() -> None:
    config = load_ivr_config(CONFIG_DIR / "ivr.toml")
    sentence = menu_sentence(config)
    for digit, option in config.options.items():
        assert f"{option.label_uk} — натисніть {digit}." in sentence
    assert sentence.rstrip().endswith("натисніть 0.")  # the operator option comes last


def test_shipped_prompts_cover_what_the_ivr_plays() -> None:
    config = load_ivr_config(CONFIG_DIR / "ivr.toml")
    prompts = load_prompts()
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


def test_empty_text_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "prompts.toml"
    bad.write_text('[text]\n"hotline/menu" = " "\n')
    with pytest.raises(PromptError, match="hotline/menu"):
        load_prompts(bad)


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(PromptError, match="apt-get install espeak-ng sox"):
        render_prompts(PromptSet("uk", "uk", 150, {"x": "y"}), tmp_path)
