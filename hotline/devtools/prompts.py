"""Voice prompts from text: the IVR speaks Ukrainian without a recording studio.

The texts live in ``config/prompts.toml``; the menu's own sentence is made
from the options in ``config/ivr.toml``, so a changed menu is never announced
wrongly. Files are rendered with espeak-ng and sox into 8 kHz mono WAV that
Asterisk plays, and re-rendered only when their text changes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hotline.core.errors import ConfigError
from hotline.settings import CONFIG_DIR
from ivr.menu import IvrConfig, load_ivr_config


class PromptError(ConfigError):
    error_id = "prompts_unavailable"

    """Prompts cannot be rendered; the message says what to install or fix."""


@dataclass(frozen=True)
class PromptSet:
    language: str
    voice: str
    speed: int
    texts: dict[str, str]  # sound name (e.g. "hotline/menu") → text


def menu_sentence(config: IvrConfig) -> str:
    """One short sentence per option, in menu order (0 last, as people expect)."""
    order = sorted(config.options, key=lambda d: (d == "0", d))
    return " ".join(
        f"{config.options[d].label_uk} — натисніть {d}." for d in order
    )


def load_prompts(
    path: Path = CONFIG_DIR / "prompts.toml", ivr_config: IvrConfig | None = None
) -> PromptSet:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PromptError(f"{path.name}: cannot read ({exc})") from None
    texts = data.get("text")
    if not isinstance(texts, dict) or not texts:
        raise PromptError(f"{path.name}: [text] needs at least one prompt")
    config = ivr_config or load_ivr_config(CONFIG_DIR / "ivr.toml")
    options = menu_sentence(config)
    rendered = {}
    for name, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"text.{name}: expected the words to speak")
        rendered[name] = text.replace("{options}", options)
    return PromptSet(
        language=str(data.get("language", "uk")),
        voice=str(data.get("voice", "uk")),
        speed=int(data.get("speed", 150)),
        texts=rendered,
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
