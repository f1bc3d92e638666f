"""The customer directory's error tree: one base with a stable code per
error, so the web layer maps them to JSON and logs can be queried by code."""

from __future__ import annotations


class CustomerError(Exception):
    code = "customer_error"


class UnknownCustomer(CustomerError):
    code = "unknown_customer"

    def __init__(self, customer: str) -> None:
        self.customer = customer
        super().__init__(f"no customer with id {customer!r}")


class CustomerConflict(CustomerError):
    """A customer that cannot be written because one of its unique keys
    (a phone number, the account) belongs to another customer. Nothing of
    it was written."""

    code = "customer_conflict"
    field = ""

    def __init__(self, customer: str, value: str, owner: str) -> None:
        self.customer = customer
        self.value = value
        self.owner = owner
        super().__init__(f"{self.field} {value} already belongs to customer {owner!r}"
                         f" (refused for customer {customer!r})")


class PhoneTaken(CustomerConflict):
    code = "phone_taken"
    field = "phones"


class AccountTaken(CustomerConflict):
    code = "account_taken"
    field = "account"
