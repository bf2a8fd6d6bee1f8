"""What a session processed under a registry course must satisfy before any frame is read, so that the
consent and approval forms hold for it: the course is registered, a faculty approval covers the day, and
the consent settings neither analyse nor show anyone who has not consented."""

from __future__ import annotations

import datetime as dt

from engagement.config import ConsentConfig
from engagement.consent.registry import Registry
from engagement.errors import UserError


def require_registry_mode(config: ConsentConfig, registry: Registry, on: dt.date | None = None) -> None:
    """Refuse (UserError) a registry-mode session on the date ``on`` (default today) that the forms do not cover."""
    if config.blur == "none" or config.unknown == "analyze":
        raise UserError(
            f"course {config.course!r}: consent.blur must not be 'none' and consent.unknown must be 'blur' when a course "
            f"is set (got blur={config.blur}, unknown={config.unknown}): its forms promise that only consenting students "
            "are analysed and everyone else is blurred"
        )
    registry.require_approval(str(config.course), on or dt.date.today())
