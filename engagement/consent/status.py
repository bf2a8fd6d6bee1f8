"""Consent statuses: what the registry stores, a roster's ``status`` column and ``engagement consent set`` accept."""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["consented", "opted_out", "withdrawn"]
CONSENTED: Final = "consented"
OPTED_OUT: Final = "opted_out"
WITHDRAWN: Final = "withdrawn"
STATUSES: tuple[Status, ...] = (CONSENTED, OPTED_OUT, WITHDRAWN)
NOT_ANALYSED: frozenset[Status] = frozenset({OPTED_OUT, WITHDRAWN})
