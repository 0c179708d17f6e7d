"""The web side: sign-in, pages and JSON APIs, one module each.

``app.build_web_app`` assembles them; ``common`` holds what they share (the
application keys, templates, JSON answers from the error tree). HTML, CSS and
JavaScript are files under ``templates/`` and ``static/``. Nothing here imports
``cti_bridge``: live data arrives through Redis and the case store.
"""
