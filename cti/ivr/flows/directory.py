"""What the IVR needs to know about customers: the `CustomerDirectory`
Protocol (look-ups, PIN check, self-service lock) and `MemoryDirectory`, an
in-process implementation for the demo and the tests.

The PIN never leaves the directory: the IVR asks whether a PIN is right and
gets yes or no, so neither the flow state nor the logs ever hold it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

_PIN_ROUNDS = 10_000


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer as the IVR sees it.

    `balance` is in the major unit of `currency` (12.50 EUR); `dates` holds
    dates a flow may read out (`${customer.due_date}`); `attributes` other
    text a flow may attach to the call; `locked_until` is set while
    self-service is locked after too many wrong PINs.
    """

    id: str
    name: str = ""
    tier: str = "standard"
    account: str = ""
    numbers: tuple[str, ...] = ()
    balance: Decimal | None = None
    currency: str = "EUR"
    dates: Mapping[str, date] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    locked_until: datetime | None = None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


class CustomerDirectory(Protocol):
    """The customer store, as far as the IVR is concerned."""

    async def by_number(self, number: str) -> Customer | None:
        """The customer who calls from `number` (E.164 or as presented)."""

    async def by_account(self, account: str) -> Customer | None:
        """The customer whose account number the caller keyed in."""

    async def check_pin(self, customer_id: str, pin: str) -> bool:
        """Whether `pin` is this customer's PIN."""

    async def lock_self_service(self, customer_id: str, until: datetime, reason: str) -> None:
        """Refuse self-service to this customer until `until`."""


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """`salt$hash` with PBKDF2-SHA256, for `MemoryDirectory.add(pin=...)`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, _PIN_ROUNDS)
    return f"{salt.hex()}${digest.hex()}"


def _pin_matches(pin: str, stored: str) -> bool:
    salt_hex, _, digest_hex = stored.partition("$")
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt_hex), _PIN_ROUNDS)
    return hmac.compare_digest(digest.hex(), digest_hex)


class MemoryDirectory:
    """Customers held in memory (demo, tests). Same behaviour as the Redis
    store will have: numbers and accounts are unique keys, PINs are kept
    hashed, a lock is a deadline on the record."""

    def __init__(self, customers: Iterable[tuple[Customer, str | None]] = ()) -> None:
        self._customers: dict[str, Customer] = {}
        self._pins: dict[str, str] = {}
        self._by_number: dict[str, str] = {}
        self._by_account: dict[str, str] = {}
        for customer, pin in customers:
            self.add(customer, pin=pin)

    def add(self, customer: Customer, *, pin: str | None = None) -> None:
        for number in customer.numbers:
            owner = self._by_number.get(number)
            if owner is not None and owner != customer.id:
                raise ValueError(f"number {number} already belongs to customer {owner}")
        self._customers[customer.id] = customer
        for number in customer.numbers:
            self._by_number[number] = customer.id
        if customer.account:
            self._by_account[customer.account] = customer.id
        if pin is not None:
            self._pins[customer.id] = hash_pin(pin)

    def get(self, customer_id: str) -> Customer | None:
        return self._customers.get(customer_id)

    async def by_number(self, number: str) -> Customer | None:
        customer_id = self._by_number.get(number)
        return None if customer_id is None else self._customers[customer_id]

    async def by_account(self, account: str) -> Customer | None:
        customer_id = self._by_account.get(account)
        return None if customer_id is None else self._customers[customer_id]

    async def check_pin(self, customer_id: str, pin: str) -> bool:
        stored = self._pins.get(customer_id)
        return stored is not None and _pin_matches(pin, stored)

    async def lock_self_service(self, customer_id: str, until: datetime, reason: str) -> None:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise KeyError(customer_id)
        self._customers[customer_id] = replace(customer, locked_until=until)
        log.info("directory.self_service_locked", customer=customer_id,
                 until=until.isoformat(), reason=reason)
