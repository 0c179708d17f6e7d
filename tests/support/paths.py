"""Where the tests find the repository and the recorded transcripts."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
AMI_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "ami"
