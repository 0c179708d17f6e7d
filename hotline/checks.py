"""``hotline check-config``: every file under the config directory and the
Asterisk configuration generated from it, one line per problem naming the
file, the key and the reason. ``hotline run`` and ``hotline demo`` run the
same checks first and refuse to start on any problem.

What is checked:
- ``hotline.toml``: the settings it holds, on their own (no environment);
- ``queues.toml``: the catalogue (names, digits, spheres, overflow, settings);
- ``ivr.toml``: the menu, its default queue against the catalogue;
- ``prompts.toml``: the words, and that every prompt of ours the IVR plays has
  words in every language (uk, en), the numbers, dates and statuses the status
  flow composes (ivr/speech.py) included (else it never gets a sound file);
  Asterisk's own sounds the menu plays must exist in the sandbox's sounds folder when there is one;
- ``seed/*.csv``: the taxonomy, and that each sphere the catalogue names exists;
- ``appeals.toml``, ``holidays.toml``, ``routing.toml``: the appeals' lifecycle,
  working calendar and routing, and the codes they name against the taxonomy;
- ``notifications.toml``: citizens' notification texts, their placeholders, and
  that each SMS text fits its segment limit with sample values;
- ``leadership.toml``: the dashboard's rating indicators (their counts) and the
  housing rating's components (their categories against the taxonomy);
- ``desk.toml``, ``streets.csv``, ``directory.toml``: the in-call panel's
  disposition labels (one per disposition of ``hotline.core.desk``), taxonomy
  keywords, the street → district list and the city services' phone directory;
- ``presence.toml``: the operator desk's pause reasons and wrap-up;
- ``asterisk/etc``: the queues the generated ``queues.conf`` defines and the
  dialplan uses are the catalogue's, the production dialplan does not include
  the simulation, and every ``${HOTLINE_…}`` it reads is defined.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from crm_sync.appeals.config import check_appeals_config
from crm_sync.desk.config import check_desk_config
from crm_sync.desk.operators import check_presence_config
from crm_sync.leadership.config import check_leadership_config
from crm_sync.notifications.templates import check_notifications_config
from crm_sync.taxonomy import check_taxonomy
from hotline.core.callflow import CALLFLOW_FILE, check_callflow_text
from hotline.core.problems import Problem
from hotline.core.queues import CATALOGUE_FILE, QueueCatalogue, check_catalogue
from hotline.core.queues import dialplan_globals as queue_globals
from hotline.core.queues import queues_conf as queue_sections
from hotline.settings import PROJECT_ROOT, SettingsError, load_settings
from ivr import speech
from ivr.menu import (
    IVR_FILE,
    LANGUAGES,
    OWN_PROMPTS,
    PROMPTS_FILE,
    IvrConfig,
    PromptTexts,
    check_ivr_text,
    check_prompts,
    menu_sounds,
    read_config_file,
)

SETTINGS_FILE = "hotline.toml"
#: The Asterisk configuration that goes with the service (templates).
ASTERISK_ETC = PROJECT_ROOT / "asterisk" / "etc"
SIMULATION_DIALPLAN = "extensions_simulation.conf"
SOUNDS = Path("usr/share/asterisk/sounds")
_SOUND_EXTENSIONS = ("gsm", "wav", "ulaw", "alaw", "sln", "sln16", "g722", "g729", "ogg")


def check_config(
    config_dir: Path,
    *,
    asterisk_etc: Path | None = ASTERISK_ETC,
    asterisk_root: Path | None = None,
) -> list[Problem]:
    """Every problem found; each names its file by its full path. ``asterisk_root``
    is the sandbox's tree, whose sounds folder is checked when it exists."""
    problems: list[Problem] = []

    def found(more: list[Problem], where: Path = config_dir) -> None:
        problems.extend(dataclasses.replace(p, file=str(where / p.file)) for p in more)

    found(_check_settings(config_dir))
    catalogue: QueueCatalogue | None = None
    text, more = read_config_file(config_dir, CATALOGUE_FILE)
    found(more)
    if text is not None:
        catalogue, more = check_catalogue(text)
        found(more)
    ivr: IvrConfig | None = None
    played: dict[str, str] = {}
    text, more = read_config_file(config_dir, IVR_FILE)
    found(more)
    if text is not None:
        played = menu_sounds(text)
        if catalogue is not None:
            ivr, more = check_ivr_text(text, catalogue)
            found(more)
    text, more = read_config_file(config_dir, PROMPTS_FILE)
    found(more)
    language = "uk"
    prompts = None
    if text is not None:
        prompts, more = check_prompts(
            text, played, languages=LANGUAGES,
            spoken={lang: speech.vocabulary(lang) for lang in LANGUAGES})
        found(more)
        language = prompts.language if prompts is not None else language
    found(_check_callflow(config_dir, catalogue, prompts))
    if asterisk_root is not None and (asterisk_root / SOUNDS).is_dir():
        found(_check_sounds(played, asterisk_root, language))
    taxonomy = None
    if catalogue is not None:
        taxonomy, more = check_taxonomy(config_dir, catalogue)
        found(more)
        if asterisk_etc is not None and asterisk_etc.is_dir():
            default_queue = ivr.default_queue if ivr is not None else catalogue.catch_all
            found(check_asterisk(asterisk_etc, catalogue, default_queue), asterisk_etc)
    found(check_appeals_config(
        config_dir,
        categories={c.code for c in taxonomy.categories} if taxonomy else None,
        districts={d.code for d in taxonomy.districts} if taxonomy else None,
        executors={e.code for e in taxonomy.executors} if taxonomy else None,
    ))
    found(check_notifications_config(config_dir))
    found(check_leadership_config(
        config_dir,
        categories={c.code for c in taxonomy.categories} if taxonomy else None,
        spheres={s.code for s in taxonomy.spheres} if taxonomy else None,
    ))
    _, more = check_desk_config(
        config_dir,
        categories={c.code for c in taxonomy.categories} if taxonomy else None,
        districts={d.code for d in taxonomy.districts} if taxonomy else None,
    )
    found(more)
    found(check_presence_config(config_dir))
    return problems


def _check_callflow(
    config_dir: Path, catalogue: QueueCatalogue | None, prompts: PromptTexts | None
) -> list[Problem]:
    """``callflow.toml`` (notices, hours, callbacks), and its prompts' words in
    every language (when ``prompts.toml`` could be read)."""
    text, problems = read_config_file(config_dir, CALLFLOW_FILE)
    if text is None or catalogue is None:
        return problems
    callflow, problems = check_callflow_text(text, catalogue.names)
    if callflow is not None and prompts is not None:
        problems += [Problem(CALLFLOW_FILE, key, f"unknown prompt {sound!r}: {PROMPTS_FILE} "
                                                 f"has no words for it in {language!r}")
                     for language, texts in prompts.by_language().items()
                     for key, sound in callflow.prompts().items()
                     if sound.startswith("hotline/") and sound not in texts.texts]
    return problems


def _check_settings(config_dir: Path) -> list[Problem]:
    path = config_dir / SETTINGS_FILE
    if not path.exists():
        return []  # optional: the defaults hold
    try:
        load_settings(path, env={})
    except SettingsError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        key, sep, rest = reason.partition(": ")
        # Settings errors read "<section.key>: <reason>".
        if sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", key):
            return [Problem(SETTINGS_FILE, key, rest)]
        return [Problem(SETTINGS_FILE, "", reason)]
    return []


def _check_sounds(played: dict[str, str], root: Path, language: str) -> list[Problem]:
    """Asterisk's own sounds the menu plays (ours are made from prompts.toml)."""
    sounds = root / SOUNDS
    # Asterisk looks in the channel's language, then in the default "en".
    places = [_in_tree(root, sounds / language), _in_tree(root, sounds / "en"), sounds]
    problems = []
    for key, sound in played.items():
        if sound.startswith(OWN_PROMPTS):
            continue
        if not any((d / f"{sound}.{ext}").is_file() for d in places for ext in _SOUND_EXTENSIONS):
            problems.append(Problem(IVR_FILE, key, f"prompt {sound!r} has no sound file in "
                                                   f"{sounds} ({language} or en)"))
    return problems


def _in_tree(root: Path, path: Path) -> Path:
    """``path`` with its symbolic links followed as Asterisk sees them in its
    chroot (Debian links sounds/en to /etc/alternatives/…, absolute in the tree)."""
    for _ in range(16):
        if not path.is_symlink():
            return path
        target = Path(path.readlink())
        path = root / target.relative_to("/") if target.is_absolute() else path.parent / target
    return path


# --- the generated Asterisk configuration ------------------------------------------


def render_asterisk(
    etc: Path, catalogue: QueueCatalogue, default_queue: str
) -> dict[str, list[tuple[int, str]]]:
    """Each template's lines with what the catalogue decides filled in, by the
    template's line number (ports, secrets and paths stay placeholders: they do
    not change what is checked here)."""
    values = {
        "QUEUES": queue_sections(catalogue),
        "QUEUE_GLOBALS": queue_globals(catalogue, default_queue),
    }
    rendered = {}
    for path in sorted(etc.glob("*.conf")):
        lines = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            text = re.sub(r"@@([A-Z_]+)@@", lambda m: values.get(m.group(1), m.group(0)), line)
            lines += [(number, part) for part in text.splitlines()]
        rendered[path.name] = lines
    return rendered


def check_asterisk(etc: Path, catalogue: QueueCatalogue, default_queue: str) -> list[Problem]:
    """Problems of the generated configuration, named by template and line."""
    conf = render_asterisk(etc, catalogue, default_queue)
    problems: list[Problem] = []
    names = set(catalogue.names)

    if "queues.conf" not in conf:
        problems.append(Problem("queues.conf", "", "missing: Asterisk would have no queues"))
    else:
        defined = set()
        for line, text in _code(conf["queues.conf"]):
            header = re.match(r"^\[([^\]]+)\](\([^)]*\))?", text)
            if header is None or header[1] == "general" or header[2] == "(!)":
                continue  # settings and templates are not queues
            defined.add(header[1])
            if header[1] not in names:
                problems.append(Problem("queues.conf", f"line {line}", f"queue [{header[1]}] is "
                                        f"not in {CATALOGUE_FILE}: add it there instead"))
        for name in sorted(names - defined):
            problems.append(Problem("queues.conf", "@@QUEUES@@",
                                    f"queue {name!r} of the catalogue is not generated"))

    if "extensions.conf" not in conf:
        problems.append(Problem("extensions.conf", "", "missing: Asterisk would have no dialplan"))
        return problems
    dialplan = _code(conf["extensions.conf"])
    defined_vars = {m for _, t in dialplan for m in re.findall(r"^(HOTLINE_\w+)\s*=", t)}
    defined_vars |= {m for _, t in dialplan for m in re.findall(r"\bSet\((HOTLINE_\w+)=", t)}
    for line, text in dialplan:
        where = f"line {line}"
        for queue in re.findall(r"\bQueue\(([^,)$]+)[,)]", text):
            if queue not in names:
                problems.append(Problem("extensions.conf", where, f"unknown queue {queue!r}"))
        if SIMULATION_DIALPLAN in text or re.search(r"\bhotline-sim-", text):
            problems.append(Problem("extensions.conf", where,
                                    "the production dialplan must not reach the simulation "
                                    f"({SIMULATION_DIALPLAN} is the sandbox's alone)"))
        for var in re.findall(r"\$\{(HOTLINE_\w+)\}", text):
            if var not in defined_vars:
                problems.append(Problem("extensions.conf", where,
                                        f"${{{var}}} is read but never defined"))
    return problems


def _code(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The lines without comments and blanks (";" starts a comment in Asterisk's files)."""
    out = []
    for number, raw in lines:
        text = raw.split(";", 1)[0].strip()
        if text:
            out.append((number, text))
    return out
