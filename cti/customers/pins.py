"""IVR PINs as the customer record keeps them: `salt$hash` (PBKDF2-SHA256),
the format `cti.ivr.flows.directory.hash_pin` writes, so records made for
the in-memory directory and for the Redis one check alike."""

from __future__ import annotations

import hashlib
import hmac

from cti.ivr.flows.directory import hash_pin as _hash_pin

PIN_LENGTHS = range(4, 9)
# Must match cti.ivr.flows.directory._PIN_ROUNDS: the format carries no
# round count.
_ROUNDS = 10_000


class InvalidPin(ValueError):
    """A PIN that is not 4 to 8 digits."""


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """The `pin_hash` to store for `pin` (4 to 8 digits); a fresh random
    salt unless one is given (the demo gives one, to be deterministic)."""
    if not pin.isascii() or not pin.isdigit() or len(pin) not in PIN_LENGTHS:
        raise InvalidPin("a PIN is 4 to 8 digits")
    return _hash_pin(pin, salt)


def pin_matches(pin: str, pin_hash: str) -> bool:
    """Whether `pin` is the PIN `pin_hash` was made from (constant time)."""
    salt_hex, _, digest_hex = pin_hash.partition("$")
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt_hex), _ROUNDS)
    return hmac.compare_digest(digest.hex(), digest_hex)
