"""Voice prompts from text: the IVR speaks Ukrainian without a recording studio.

The words live in ``prompts.toml`` of the config directory; the menu's own
sentence is made from the menu's options (the queues of ``queues.toml`` that
have a digit), so a changed menu is never announced wrongly. Files are
rendered with espeak-ng and sox into 8 kHz mono WAV that Asterisk plays, and
re-rendered only when their words change.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from hotline.core.errors import ConfigError
from ivr.menu import (
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


def menu_sentence(config: IvrConfig) -> str:
    """One short sentence per option, in menu order (0 last, as people expect)."""
    order = sorted(config.options, key=lambda d: (d == "0", d))
    return " ".join(
        f"{config.options[d].label_uk} — натисніть {d}." for d in order
    )


def load_prompts(config_dir: Path, ivr_config: IvrConfig | None = None) -> PromptSet:
    """``prompts.toml`` of ``config_dir`` with the menu sentence filled in."""
    path = config_dir / PROMPTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot read ({exc})") from None
    config = ivr_config or load_ivr_config(config_dir)
    prompts, problems = check_prompts(text, config.prompts())
    if problems or prompts is None:
        raise IvrConfigError(problems, where=str(config_dir))
    options = menu_sentence(config)
    return PromptSet(
        language=prompts.language,
        voice=prompts.voice,
        speed=prompts.speed,
        texts={name: words.replace(OPTIONS_PLACEHOLDER, options)
               for name, words in prompts.texts.items()},
    )


def render_prompts(prompts: PromptSet, sounds_dir: Path) -> list[str]:
    """Write ``<sounds_dir>/<language>/<name>.wav``; returns the names (re)rendered."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise PromptError(
            f"{' and '.join(missing)} not installed (apt-get install espeak-ng sox): "
            "they speak the IVR's prompts"
        )
    done = []
    for name, text in prompts.texts.items():
        target = sounds_dir / prompts.language / f"{name}.wav"
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
            _run(["sox", str(spoken), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed",
                  str(target)], name)
        stamp.write_text(digest)
        done.append(name)
    return done


def _run(cmd: list[str], name: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise PromptError(f"rendering prompt {name} with {cmd[0]} failed: {proc.stderr.strip()}")
