"""The case store (schema, migrations, queries), people and their passwords,
statistics, and the sync with the outside world. Imports only ``hotline.core``."""
