"""The outbox relay (issue 10): :mod:`.relay` fans outbox events out into messages
and delivers them; :mod:`.providers` SMTP e-mail and the HTTP SMS gateway;
:mod:`.model` the provider interface; :mod:`.admin` listing, replay and delivery
reports. Citizens' notifications are a router (:mod:`crm_sync.notifications`);
an external CRM will be one more router and provider."""

from crm_sync.outbox.model import (
    Event,
    NewMessage,
    Outgoing,
    PermanentFailure,
    Provider,
    Router,
    TemporaryFailure,
)
from crm_sync.outbox.relay import ProviderLimits, Relay, RelayOptions

__all__ = [
    "Event",
    "NewMessage",
    "Outgoing",
    "PermanentFailure",
    "Provider",
    "ProviderLimits",
    "Relay",
    "RelayOptions",
    "Router",
    "TemporaryFailure",
]
