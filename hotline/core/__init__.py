"""The ground floor: records, ports, errors, people, live-feed names, privacy,
logs and asyncio helpers. No I/O of its own and no import of any other package
of the project: everything else may import it (checked by ``tests/unit/test_import_rules.py``).
"""
