"""The key that signs sessions and CSRF tokens.

From ``web.session_secret`` (``HOTLINE_WEB_SESSION_SECRET`` or the secrets file)
when set, which every web process of a deployment must share; otherwise
generated once into ``<state dir>/secrets/web.toml``. The file is created with
mode 0600 from its first byte (``os.open``) and linked into place atomically,
so two processes starting at once end up with the same key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tomllib
from pathlib import Path

from hotline.core.errors import ConfigError
from hotline.core.logs import get_logger

FILE_NAME = "web.toml"
MIN_SECRET_CHARS = 32
log = get_logger("hotline.web.secret_key")


def session_key(configured: str, state_dir: Path) -> bytes:
    if configured:
        if len(configured) < MIN_SECRET_CHARS:
            raise ConfigError(f"web.session_secret: at least {MIN_SECRET_CHARS} characters")
        return configured.encode()
    return _from_file(state_dir / "secrets" / FILE_NAME).encode()


def _from_file(path: Path) -> str:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(folder, 0o700)
    if not path.exists():
        _create(path, secrets.token_urlsafe(48))
    _tighten(path, 0o600)
    try:
        value = tomllib.loads(path.read_text("utf-8")).get("session_secret")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{path}: session_secret must be text of at least "
                          f"{MIN_SECRET_CHARS} characters")
    return value


def _create(path: Path, secret: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f'session_secret = "{secret}"\n')
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(partial, path)
            log.info("web_session_secret_created", path=str(path))
    finally:
        partial.unlink(missing_ok=True)


def _tighten(path: Path, mode: int) -> None:
    """Group or others may not read secrets: an existing file or folder is repaired."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        path.chmod(mode)
        log.warning("secret_mode_repaired", path=str(path), was=oct(current), now=oct(mode))
