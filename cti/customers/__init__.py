"""The customer directory: customer records and their contact history in
Redis, for screen pops, VIP recognition and IVR identification; imports
and demo data."""

from cti.customers.directory import RedisDirectory, SelfServiceLock, ivr_customer
from cti.customers.errors import (
    AccountTaken,
    CustomerConflict,
    CustomerError,
    PhoneTaken,
    UnknownCustomer,
)
from cti.customers.importer import (
    ImportProgress,
    ImportRefused,
    ImportSummary,
    RejectedRow,
    import_file,
)
from cti.customers.models import Contact, Customer, FieldProblem, field_problems, parse_customer
from cti.customers.pins import InvalidPin, hash_pin, pin_matches
from cti.customers.store import CustomerKeys, CustomerStore

__all__ = [
    "AccountTaken",
    "Contact",
    "Customer",
    "CustomerConflict",
    "CustomerError",
    "CustomerKeys",
    "CustomerStore",
    "FieldProblem",
    "ImportProgress",
    "ImportRefused",
    "ImportSummary",
    "InvalidPin",
    "PhoneTaken",
    "RedisDirectory",
    "RejectedRow",
    "SelfServiceLock",
    "UnknownCustomer",
    "field_problems",
    "hash_pin",
    "import_file",
    "ivr_customer",
    "parse_customer",
    "pin_matches",
]
