"""Providers: e-mail over SMTP (aiosmtplib) and SMS over an HTTP gateway (aiohttp).

The SMS gateway's API as we speak it: ``POST {url}/messages`` with a JSON body
``{"to", "text", "encoding", "segments", "reference"}``, headers
``Authorization: Bearer <key>`` and ``Idempotency-Key`` (the gateway answers a
repeated key with the first message's id); 200/201/202 ``{"id": …}``; 429 with
``Retry-After`` (seconds); 5xx and timeouts are temporary, other 4xx permanent.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
import aiosmtplib
import dkim

from crm_sync.outbox.model import Outgoing, PermanentFailure, TemporaryFailure
from hotline.core.privacy import mask_phone


class NullProvider:
    """Accepts everything at once (the benchmark's floor)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0

    async def send(self, message: Outgoing) -> str:
        self.sent += 1
        return f"null-{message.id}"


def message_id(idempotency_key: str, domain: str) -> str:
    """The same key always makes the same Message-ID: a resend is recognisable as one
    (and DKIM signs a header that never changes between attempts)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


_POLICY = policy.SMTP.clone(max_line_length=998)
#: What a DKIM signature covers: everything a receiver shows or threads by, and the
#: body's type, so a relay on the way can change none of it unnoticed.
DKIM_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"MIME-Version",
                b"Content-Type", b"List-Unsubscribe")


@dataclass(frozen=True)
class DkimKey:
    """The private key of ``<selector>._domainkey.<domain>`` (PEM, RSA); the public
    half is published in DNS by whoever runs the domain."""

    selector: str
    domain: str
    private_key: bytes = b""

    def __repr__(self) -> str:  # never the key itself, in logs or tracebacks
        return f"DkimKey(selector={self.selector!r}, domain={self.domain!r})"

    def sign(self, raw: bytes) -> bytes:
        """The ``DKIM-Signature`` header line (relaxed/relaxed, rsa-sha256) to put first."""
        return bytes(dkim.sign(raw, self.selector.encode(), self.domain.encode(),
                               self.private_key, canonicalize=(b"relaxed", b"relaxed"),
                               include_headers=list(DKIM_HEADERS)))


class SmtpProvider:
    def __init__(self, host: str, port: int, sender: str, *, name: str = "email",
                 username: str = "", password: str = "", starttls: bool = False,
                 timeout: float = 15.0, dkim_key: DkimKey | None = None) -> None:
        self.name = name
        self.host, self.port, self.sender = host, port, sender
        self.domain = sender.rpartition("@")[2] or "localhost"
        self._auth = (username, password) if username else None
        self._starttls = starttls
        self._timeout = timeout
        self._dkim = dkim_key

    async def raw(self, message: Outgoing) -> bytes:
        """The message as it goes on the wire, signed when a DKIM key is set."""
        # Flattened here: aiosmtplib's own generator folds to 78 columns.
        raw = self.build(message).as_bytes(policy=_POLICY)
        if self._dkim is None:
            return raw
        # RSA in pure Python takes milliseconds: off the event loop.
        return await asyncio.to_thread(self._dkim.sign, raw) + raw

    def build(self, message: Outgoing) -> EmailMessage:
        # Long header lines are folded, never turned into encoded-words: a URL in
        # List-Unsubscribe must stay a URL.
        mail = EmailMessage(policy=_POLICY)
        # The headers DKIM signs (From, To, Subject, Date, Message-ID, MIME-Version,
        # Content-Type) are all set here, once, and nothing on the way rewrites them.
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = message_id(message.idempotency_key, self.domain)
        mail["X-Hotline-Idempotency-Key"] = message.idempotency_key
        mail["Auto-Submitted"] = "auto-generated"
        if unsubscribe := message.meta.get("opt_out_url"):
            mail["List-Unsubscribe"] = f"<{unsubscribe}>"
        mail.set_content(message.body, charset="utf-8")
        if message.html:
            mail.add_alternative(message.html, subtype="html", charset="utf-8")
        return mail

    async def send(self, message: Outgoing) -> str:
        raw = await self.raw(message)
        try:
            await aiosmtplib.send(
                raw, sender=self.sender,
                recipients=[message.recipient], hostname=self.host, port=self.port,
                timeout=self._timeout,
                username=self._auth[0] if self._auth else None,
                password=self._auth[1] if self._auth else None,
                start_tls=self._starttls, use_tls=False,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(f"recipient refused: {exc}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from None
            raise TemporaryFailure(f"SMTP {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"SMTP: {type(exc).__name__}: {exc}") from None
        return message_id(message.idempotency_key, self.domain)



class HttpProvider:
    """What the HTTP providers share: one client session, bearer authentication, and
    how an answer is judged — 429, 5xx, transport errors and unreadable answers are
    temporary; another 4xx is permanent; a 2xx must carry the peer's id."""

    def __init__(self, url: str, api_key: str, *, name: str, timeout: float = 10.0) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, message: Outgoing) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}",
                "Idempotency-Key": message.idempotency_key}

    async def _post_for_id(self, peer: str, url: str, refused: str, **request: Any) -> str:
        """POST and return the id in the JSON answer; ``refused`` starts the message
        of a permanent refusal (it must name no citizen's number)."""
        try:
            async with self._client().post(url, **request) as response:
                if response.status == 429:
                    raise TemporaryFailure(f"{peer}: 429 too many requests",
                                           _retry_after(response.headers.get("Retry-After")),
                                           throttled=True)
                if response.status >= 500:
                    raise TemporaryFailure(f"{peer}: HTTP {response.status}")
                if response.status >= 400:
                    text = (await response.text())[:200]
                    raise PermanentFailure(f"{refused}: HTTP {response.status} {text}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryFailure(f"{peer}: {type(exc).__name__}: {exc}") from None
        except ValueError:
            raise TemporaryFailure(f"{peer}: an answer that is not JSON") from None
        if not isinstance(data, dict) or not data.get("id"):
            raise TemporaryFailure(f"{peer}: an answer without an id")
        return str(data["id"])


class HttpSmsProvider(HttpProvider):
    def __init__(self, url: str, api_key: str, *, name: str = "sms",
                 timeout: float = 10.0, sender: str = "1551") -> None:
        super().__init__(url, api_key, name=name, timeout=timeout)
        self._sender = sender

    async def send(self, message: Outgoing) -> str:
        body: dict[str, Any] = {
            "to": message.recipient, "from": self._sender, "text": message.body,
            "encoding": message.meta.get("encoding"), "segments": message.meta.get("segments"),
            "reference": message.idempotency_key,
        }
        return await self._post_for_id(
            "gateway", f"{self.url}/messages",
            f"gateway refused the text to {mask_phone(message.recipient)}",
            json=body, headers=self._headers(message))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None
