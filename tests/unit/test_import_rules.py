"""The layout's import rules hold for the tree, and the check can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.devtools.import_rules import check


def test_the_tree_keeps_the_import_rules() -> None:
    assert check() == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for top in ("hotline", "hotline/core", "hotline/web", "hotline/devtools",
                "ivr", "cti_bridge", "crm_sync", "agi_scripts"):
        (root / top).mkdir(parents=True, exist_ok=True)
        (root / top / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"hotline/core/x.py": "from crm_sync import db\n"},
         "hotline.core must not import crm_sync"),
        ({"hotline/core/x.py": "import asyncpg\n"}, "hotline.core must not do I/O"),
        ({"ivr/x.py": "from cti_bridge.ami_client import AmiClient\n"},
         "ivr must not import cti_bridge"),
        ({"crm_sync/x.py": "def f():\n    from cti_bridge import service\n"},
         "crm_sync must not import cti_bridge"),
        ({"hotline/web/x.py": "from cti_bridge.service import CtiService\n"},
         "hotline.web must not import cti_bridge"),
        ({"cti_bridge/x.py": "from hotline.settings import Settings\n"},
         "cti_bridge must not import hotline"),
        ({"hotline/settings.py": "from hotline.devtools import embedded\n"},
         "only the CLI and the composition root import the dev tools"),
        ({"crm_sync/x.py": "from ..ivr import menu\n"}, "crm_sync must not import ivr"),
    ],
)
def test_each_rule_fails_on_a_violating_import(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    problems = check(_tree(tmp_path, files))
    assert any(expected in problem for problem in problems), problems


def test_a_cycle_between_packages_is_named(tmp_path: Path) -> None:
    import hotline.devtools.import_rules as rules

    allowed = dict(rules.ALLOWED)
    rules.ALLOWED.update(ivr=frozenset({"hotline.core", "crm_sync"}),
                         crm_sync=frozenset({"hotline.core", "ivr"}))
    try:
        problems = check(_tree(tmp_path, {"ivr/a.py": "import crm_sync.b\n",
                                          "crm_sync/b.py": "import ivr.a\n"}))
    finally:
        rules.ALLOWED.clear()
        rules.ALLOWED.update(allowed)
    assert any(p.startswith("import cycle:") for p in problems), problems


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support/; a test module importing another one
    runs (and couples) that module's tests too."""
    from tests.support.paths import REPO_ROOT

    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{n}"
        for path in sorted((REPO_ROOT / "tests").rglob("test_*.py"))
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if line.lstrip().startswith(("from tests.unit", "from tests.contract",
                                     "from tests.integration", "from tests.system",
                                     "import tests.unit", "import tests.contract",
                                     "import tests.integration", "import tests.system"))
    ]
    assert offenders == []
