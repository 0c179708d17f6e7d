"""The web side: sign-in, pages and JSON APIs, one module each.

``app.build_web_app`` assembles them; ``common`` holds what they share (the
application keys, templates, JSON answers from the error tree). HTML, CSS and
JavaScript are files under ``templates/`` and ``static/`` (no inline script or
style: the Content-Security-Policy forbids it). Nothing here imports
``cti_bridge``: live data arrives through Redis and the case store.

Defences, one module each: ``sessions`` (rows MAC-signed with a key Redis never
sees, given by the composition root), ``guard`` (Origin and CSRF checks, security headers, the
client behind a trusted proxy), ``limits`` (failed sign-ins per login and per
address, in Redis), ``live`` (one Redis subscriber per process for every
websocket, caps, sockets closed when their session ends).
"""
