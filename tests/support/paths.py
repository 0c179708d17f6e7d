"""Where the tests find the repository and the recorded transcripts."""

from __future__ import annotations

from pathlib import Path

from hotline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
AMI_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "ami"
#: The shipped configuration, found as the service finds it (``Settings.config_path``).
CONFIG_DIR = Settings().config_path
