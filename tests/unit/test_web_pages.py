"""The pages keep to the Content-Security-Policy: no inline script or style, every
form that changes state carries a CSRF field."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from hotline.web.guard import CONTENT_SECURITY_POLICY

TEMPLATES = sorted(p.name for p in resources.files("hotline.web").joinpath("templates").iterdir()
                   if p.name.endswith(".html"))


def page(name: str) -> str:
    return resources.files("hotline.web").joinpath("templates", name).read_text("utf-8")


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_inline_script_or_style(name: str) -> None:
    text = page(name)
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == [], "inline script"
    assert "<style" not in text and " style=" not in text, "inline style"
    assert re.findall(r"\son[a-z]+\s*=", text) == [], "inline event handler"
    assert "javascript:" not in text


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_post_form_carries_a_csrf_field(name: str) -> None:
    text = page(name)
    forms = re.findall(r'<form method="post".*?</form>', text, flags=re.S)
    for form in forms:
        assert '<input type="hidden" name="csrf" value="{{csrf}}">' in form


def test_the_policy_is_strict() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_only_frame_ancestors_and_frame_src_differ_for_the_desk_and_its_panel() -> None:
    from hotline.web.guard import FRAME_HOST_POLICY, FRAMEABLE_HEADERS

    def directives(policy: str) -> dict[str, str]:
        return dict(d.strip().split(" ", 1) for d in policy.split(";"))

    strict = directives(CONTENT_SECURITY_POLICY)
    framed = directives(FRAMEABLE_HEADERS["Content-Security-Policy"])
    assert framed == {**strict, "frame-ancestors": "'self'"}
    assert FRAMEABLE_HEADERS["X-Frame-Options"] == "SAMEORIGIN"
    assert directives(FRAME_HOST_POLICY) == {**strict, "frame-src": "'self'"}
