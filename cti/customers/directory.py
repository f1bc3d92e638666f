"""`RedisDirectory`: the IVR's `CustomerDirectory` over the CustomerStore.
It owns PIN checking and the self-service lock, kept in Redis with an
expiry so a lock outlives the call and the node but not its deadline.

Two locks meet here. The flow counts wrong PINs within one call and asks
for a lock (`lock_self_service`); the directory also counts wrong PINs
across calls in a sliding window, so a caller cannot dodge the flow's
count by hanging up after each guess. While locked, `check_pin` says no
without looking at the PIN.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from cti.customers.errors import UnknownCustomer
from cti.customers.models import Customer, is_customer_id
from cti.customers.pins import pin_matches
from cti.customers.store import CustomerStore
from cti.ivr.flows import directory as ivr

log = structlog.get_logger(__name__)

# KEYS: record, lock; ARGV: lock value, ttl (ms). A shorter lock never
# replaces a longer one.
_LOCK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('PTTL', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: failures, lock; ARGV: window (ms), max failures, lock value, lock ttl (ms)
_PIN_FAILED = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if failures >= tonumber(ARGV[2]) then
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  end
  redis.call('DEL', KEYS[1])
end
return failures
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SelfServiceLock:
    until: datetime
    reason: str


class RedisDirectory:
    """The customers the IVR identifies, as the `CustomerDirectory` protocol
    asks. `clock` must be the IVR's clock (aware datetimes): lock lifetimes
    are computed from it, not from the Redis server's.

    `max_failures` wrong PINs within `failure_window`, over any number of
    calls, lock self-service for `lock_for`.
    """

    def __init__(self, customers: CustomerStore, *, clock: Callable[[], datetime] = _utc_now,
                 max_failures: int = 5, failure_window: timedelta = timedelta(minutes=15),
                 lock_for: timedelta = timedelta(minutes=30)) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.customers = customers
        self._clock = clock
        self._max_failures = max_failures
        self._failure_window = failure_window
        self._lock_for = lock_for
        self._keys = customers.keys
        self._lock = customers.redis.register_script(_LOCK)
        self._pin_failed = customers.redis.register_script(_PIN_FAILED)

    async def by_number(self, number: str) -> ivr.Customer | None:
        return await self._for_ivr(await self.customers.by_phone(number))

    async def by_account(self, account: str) -> ivr.Customer | None:
        return await self._for_ivr(await self.customers.by_account(account))

    async def check_pin(self, customer_id: str, pin: str) -> bool:
        customer = await self.customers.get(customer_id)
        if customer is None or customer.pin_hash is None:
            log.info("customers.pin_unavailable", customer=customer_id,
                     reason="unknown customer" if customer is None else "no PIN set")
            return False
        lock = await self.self_service_lock(customer_id)
        if lock is not None:
            log.warning("customers.pin_refused_while_locked", customer=customer_id,
                        until=lock.until.isoformat())
            return False
        # PBKDF2 takes milliseconds of CPU: off the event loop.
        if await asyncio.to_thread(pin_matches, pin, customer.pin_hash):
            await self.customers.redis.delete(self._keys.pin_failures(customer_id))
            return True
        until = self._clock() + self._lock_for
        failures = int(await self._pin_failed(
            keys=[self._keys.pin_failures(customer_id), self._keys.pin_lock(customer_id)],
            args=[_ms(self._failure_window), self._max_failures,
                  _lock_value(until, f"{self._max_failures} wrong PINs across calls"),
                  _ms(self._lock_for)]))
        if failures >= self._max_failures:
            log.warning("customers.pin_locked", customer=customer_id, failures=failures,
                        until=until.isoformat())
        return False

    async def lock_self_service(self, customer_id: str, until: datetime, reason: str) -> None:
        """Refuse self-service until `until`; `UnknownCustomer` if there is
        no such customer. A lock already lasting longer is kept."""
        if not is_customer_id(customer_id):
            raise UnknownCustomer(customer_id)
        ttl = until - self._clock()
        if ttl <= timedelta(0):
            log.info("customers.lock_already_over", customer=customer_id,
                     until=until.isoformat())
            return
        done = int(await self._lock(
            keys=[self._keys.record(customer_id), self._keys.pin_lock(customer_id)],
            args=[_lock_value(until, reason), _ms(ttl)]))
        if done < 0:
            raise UnknownCustomer(customer_id)
        log.info("customers.self_service_locked", customer=customer_id,
                 until=until.isoformat(), reason=reason, kept_longer_lock=done == 0)

    async def self_service_lock(self, customer_id: str) -> SelfServiceLock | None:
        """The lock on this customer's self-service, if one is running."""
        if not is_customer_id(customer_id):
            return None
        value = await self.customers.redis.get(self._keys.pin_lock(customer_id))
        if value is None:
            return None
        fields = json.loads(value)
        lock = SelfServiceLock(datetime.fromisoformat(fields["until"]), str(fields["reason"]))
        return lock if lock.until > self._clock() else None

    async def unlock_self_service(self, customer_id: str) -> bool:
        """Lift a lock and forget wrong PINs (a supervisor's decision)."""
        if not is_customer_id(customer_id):
            return False
        removed = int(await self.customers.redis.delete(
            self._keys.pin_lock(customer_id), self._keys.pin_failures(customer_id)))
        log.info("customers.self_service_unlocked", customer=customer_id)
        return removed > 0

    async def _for_ivr(self, customer: Customer | None) -> ivr.Customer | None:
        if customer is None:
            return None
        lock = await self.self_service_lock(customer.id)
        return ivr_customer(customer, None if lock is None else lock.until)


def ivr_customer(customer: Customer, locked_until: datetime | None = None) -> ivr.Customer:
    """The IVR's view of a customer: segment values become attributes a
    flow may read (`${customer.recency_days}`); no PIN hash."""
    return ivr.Customer(
        id=customer.id, name=customer.name, tier=customer.tier,
        account=customer.account or "", numbers=tuple(customer.phones),
        balance=customer.balance, currency=customer.currency,
        attributes={key: str(value) for key, value in customer.segment.items()},
        locked_until=locked_until,
    )


def _lock_value(until: datetime, reason: str) -> str:
    return json.dumps({"until": until.isoformat(), "reason": reason})


def _ms(duration: timedelta) -> int:
    return max(1, round(duration.total_seconds() * 1000))
