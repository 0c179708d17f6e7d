"""DKIM: mail the relay sends through a real SMTP server on loopback carries a
signature that a receiver verifies against the published key (dkimpy's verifier,
the DNS answer given from the test's key); a change on the way breaks it; a key
set up wrongly stops the start with one clear line."""

from __future__ import annotations

import base64
import email
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import dkim
import pytest
import pytest_asyncio

from crm_sync.outbox.model import Outgoing
from crm_sync.outbox.providers import SmtpProvider
from hotline.app import dkim_key
from hotline.core.errors import ConfigError
from hotline.settings import RelaySettings
from tests.support.providers import LoopbackSmtp

SELECTOR, DOMAIN = "hotline2026", "kyiv.example"


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh RSA key (openssl), and the DNS TXT record that publishes its public half."""
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "dkim.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(private)], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest_asyncio.fixture
async def smtp() -> AsyncIterator[LoopbackSmtp]:
    server = LoopbackSmtp()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def mail(key: str) -> Outgoing:
    return Outgoing(id=1, provider="email", idempotency_key=key, recipient="olena@example.test",
                    subject="Звернення 1551-2026-000042 виконано",
                    body="Ваше звернення виконано.\n", html="<p>Ваше звернення виконано.</p>",
                    meta={"opt_out_url": "https://1551.test/optout?c=1&t=abc"}, attempt=1)


async def test_sent_mail_verifies_against_the_published_key_and_a_change_breaks_it(
    smtp: LoopbackSmtp, key_files: tuple[Path, bytes]
) -> None:
    private, record = key_files
    settings = RelaySettings(email_from=f"1551@{DOMAIN}", dkim_selector=SELECTOR,
                             dkim_key_file=str(private))
    key = dkim_key(settings)
    assert key is not None and "PRIVATE" not in repr(key)
    provider = SmtpProvider("127.0.0.1", smtp.port, settings.email_from, dkim_key=key)
    await provider.send(mail("appeal:42:done:email"))

    raw = smtp.sink.raws[0]
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else b""

    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dns)
    assert asked == [f"{SELECTOR}._domainkey.{DOMAIN}.".encode()]
    signature = "".join(str(email.message_from_bytes(raw)["DKIM-Signature"]).split()).encode()
    tags = dict(t.split(b"=", 1) for t in signature.split(b";") if t)
    assert (tags[b"d"], tags[b"s"], tags[b"a"]) == (DOMAIN.encode(), SELECTOR.encode(),
                                                      b"rsa-sha256")
    covered = {h.strip().lower() for h in tags[b"h"].split(b":")}
    assert {b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe"} <= covered
    # A relay on the way that rewrites the subject, or the body, is found out.
    assert not dkim.verify(raw.replace("виконано".encode(), "відхилено".encode(), 1),
                           dnsfunc=dns)
    assert not dkim.verify(raw.replace(b"Subject:", b"Subject: [fwd]", 1), dnsfunc=dns)


async def test_without_a_key_mail_goes_unsigned(smtp: LoopbackSmtp) -> None:
    assert dkim_key(RelaySettings()) is None
    await SmtpProvider("127.0.0.1", smtp.port, f"1551@{DOMAIN}").send(mail("k:unsigned"))
    assert not smtp.sink.raws[0].startswith(b"DKIM-Signature:")


def test_a_key_set_up_wrongly_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set both or neither"):
        dkim_key(RelaySettings(dkim_selector=SELECTOR))
    with pytest.raises(ConfigError, match="cannot read"):
        dkim_key(RelaySettings(dkim_selector=SELECTOR, dkim_key_file=str(tmp_path / "none")))
    (tmp_path / "not.pem").write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        dkim_key(RelaySettings(dkim_selector=SELECTOR, dkim_key_file=str(tmp_path / "not.pem")))

