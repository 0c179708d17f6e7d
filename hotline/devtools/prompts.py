"""Voice prompts from text: the IVR speaks Ukrainian and English without a
recording studio.

The words live in ``prompts.toml`` of the config directory (the top level
Ukrainian, ``[en]`` English); the menu's own sentence is made from the menu's
options (the queues of ``queues.toml`` that have a digit), so a changed menu is
never announced wrongly; the names of categories and executors the status flow
speaks come from the taxonomy. Files are rendered with espeak-ng and sox into
8 kHz mono WAV in ``sounds/<language>/`` that Asterisk plays, and re-rendered
only when their words change (written aside and renamed: Asterisk instances
sharing the tree never play a half-written file).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from crm_sync.ivr_store import spoken_names
from hotline.core.errors import ConfigError, HotlineError
from ivr import speech
from ivr.menu import (
    LANGUAGES,
    OPTIONS_PLACEHOLDER,
    PROMPTS_FILE,
    IvrConfig,
    IvrConfigError,
    PromptTexts,
    check_prompts,
    load_ivr_config,
)

#: The words of each prompt and the voice that speaks them.
PromptSet = PromptTexts


class PromptError(ConfigError):
    """Prompts cannot be rendered; the message says what to install or fix."""

    error_id = "prompts_unavailable"


def menu_sentence(config: IvrConfig, language: str = "uk") -> str:
    """One short sentence per option, in menu order (0 last, as people expect)."""
    order = sorted(config.options, key=lambda d: (d == "0", d))
    if language == "en":
        return " ".join(f"For {config.options[d].label_en.lower()}, press {d}." for d in order)
    return " ".join(
        f"{config.options[d].label_uk} — натисніть {d}." for d in order
    )


def spoken_vocabulary() -> dict[str, frozenset[str]]:
    """Per language, the prompts ivr/speech.py composes numbers and dates from."""
    return {lang: speech.vocabulary(lang) for lang in LANGUAGES}


def load_prompts(config_dir: Path, ivr_config: IvrConfig | None = None) -> PromptSet:
    """``prompts.toml`` of ``config_dir`` with the menu sentence and digits filled
    in, and the taxonomy's categories and executors, in every language."""
    path = config_dir / PROMPTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot read ({exc})") from None
    config = ivr_config or load_ivr_config(config_dir)
    prompts, problems = check_prompts(text, config.prompts(), languages=LANGUAGES,
                                      spoken=spoken_vocabulary())
    if problems or prompts is None:
        raise IvrConfigError(problems, where=str(config_dir))
    try:
        names = spoken_names(config_dir)
    except HotlineError:
        names = {}  # check-config names the problem; the menu still speaks
    filled = {lang: _filled(p, config, names) for lang, p in prompts.by_language().items()}
    default = filled.pop(prompts.language)
    return PromptSet(default.language, default.voice, default.speed, default.texts, filled)


def _filled(
    prompts: PromptTexts, config: IvrConfig, names: dict[str, tuple[str, str]]
) -> PromptTexts:
    values = {
        OPTIONS_PLACEHOLDER: menu_sentence(config, prompts.language),
        "{status_digit}": config.status.digit,
        "{language_digit}": config.language.switch_digit,
    }
    texts = {}
    for name, words in prompts.texts.items():
        for placeholder, value in values.items():
            words = words.replace(placeholder, value)
        texts[name] = words
    for name, (uk, en) in names.items():
        texts[name] = en if prompts.language == "en" else uk
    return PromptTexts(prompts.language, prompts.voice, prompts.speed, texts)


def render_prompts(prompts: PromptSet, sounds_dir: Path, root: Path | None = None) -> list[str]:
    """Write ``<sounds_dir>/<language>/<name>.wav``; returns the names (re)rendered
    (other languages than the default as ``<language>:<name>``). ``root``: the
    chroot ``sounds_dir`` is in, whose absolute symbolic links (Debian's
    ``sounds/en`` → ``/etc/alternatives/…``) are followed inside it, never on the host.
    """
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise PromptError(
            f"{' and '.join(missing)} not installed (apt-get install espeak-ng sox): "
            "they speak the IVR's prompts"
        )
    done = []
    for language in prompts.by_language().values():
        folder = sounds_dir / language.language
        if root is not None:
            folder = in_tree(root, folder)
        done += _render_language(language, folder, prompts.language)
    return done


def in_tree(root: Path, path: Path) -> Path:
    """``path`` with its symbolic links followed as a program chrooted in ``root`` sees them."""
    for _ in range(16):
        if not path.is_symlink():
            return path
        target = Path(path.readlink())
        path = root / target.relative_to("/") if target.is_absolute() else path.parent / target
    return path


def _render_language(prompts: PromptTexts, folder: Path, default: str) -> list[str]:
    done = []
    for name, text in prompts.texts.items():
        target = folder / f"{name}.wav"
        stamp = target.with_suffix(".sha256")
        digest = hashlib.sha256(f"{prompts.voice}|{prompts.speed}|{text}".encode()).hexdigest()
        if target.exists() and stamp.exists() and stamp.read_text() == digest:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            spoken = Path(tmp) / "spoken.wav"
            _run(["espeak-ng", "-v", prompts.voice, "-s", str(prompts.speed),
                  "-w", str(spoken), text], name)
            # Asterisk's wav format: 8 kHz, mono, 16-bit signed linear
            converted = Path(tmp) / "converted.wav"
            _run(["sox", str(spoken), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed",
                  str(converted)], name)
            aside = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(converted, aside)
            aside.chmod(0o644)
            aside.replace(target)
        stamp.write_text(digest)
        done.append(name if prompts.language == default else f"{prompts.language}:{name}")
    return done


def _run(cmd: list[str], name: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise PromptError(f"rendering prompt {name} with {cmd[0]} failed: {proc.stderr.strip()}")
