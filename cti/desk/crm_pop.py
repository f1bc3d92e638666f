"""The CRM's part of the screen pop: what it may change (`with_crm`, pure)
and when (`CrmPops`): the first pop waits at most `pop_wait_seconds` for
the CRM, then goes out without it, and a late answer follows as an update.

Precedence: the customer directory is the center's own record, so it
keeps the identity (`customer` id, name, tier, phones), `identified_by`,
the VIP flag routing used, and the contact history. The CRM fills what the
directory's customer leaves empty (account, notes, segment keys it does
not have) and is shown whole in its own `crm` block, with `crm_status`. A
caller the directory does not know stays `customer: null` (`unknown`):
the CRM's record is in `crm` for the agent to judge.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import structlog

from cti.customers.models import Customer
from cti.desk.crm import CrmClient, CrmQuery, CrmResult
from cti.desk.protocol import CrmStatus, CrmView, PopView

log = structlog.get_logger(__name__)


def with_crm(pop: PopView, result: CrmResult) -> PopView:
    """`pop` with the CRM's answer merged in (see the module's precedence)."""
    record = result.record
    return _merged(pop, None if record is None else record.view(), result.status)


def with_crm_of(pop: PopView, shown: PopView) -> PopView:
    """`pop`, built again from the directory, with the CRM's part of the
    pop `shown` for the same call (its block, its status and what it
    filled in the customer): Redis never holds the CRM's answer."""
    return _merged(pop, shown.crm, shown.crm_status)


def _merged(pop: PopView, crm: CrmView | None, status: CrmStatus) -> PopView:
    if crm is None:
        return pop.model_copy(update={"crm": None, "crm_status": status})
    customer = pop.customer
    if customer is not None:
        customer = customer.model_copy(update={
            "account": customer.account or crm.account,
            "notes": customer.notes or crm.notes,
            "segment": {**crm.segment, **customer.segment},
        })
    return pop.model_copy(update={"customer": customer, "crm": crm, "crm_status": "found"})


class CrmPops:
    def __init__(self, client: CrmClient, *, pop_wait: float) -> None:
        self.client = client
        self._pop_wait = pop_wait
        # For metrics: what the first pops said of the CRM, and the updates.
        self.first_pops: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()

    def prefetch(self, caller_number: str, customer: Customer | None) -> None:
        """Ask now about a caller the directory just looked up (when the
        call starts): the pop then finds the answer cached or on its way.
        Same question as the pop asks when it identifies them by number."""
        query = self.client.query(caller_number, None if customer is None else customer.account)
        if query is not None:
            self.client.lookup(query)  # the client owns the request; the cache keeps its answer

    def answered_now(self, pop: PopView) -> PopView | None:
        """`pop` with the CRM's answer when it needs no wait (cached, or
        nothing to ask), else None: then `first_pop` waits its budget."""
        query = self._query(pop)
        if query is None:
            pop = pop.model_copy(update={"crm_status": "not_found"})
        else:
            answer = self.client.lookup(query)
            if not answer.done():
                return None
            pop = with_crm(pop, _result(answer))
        self.first_pops[pop.crm_status] += 1
        return pop

    async def first_pop(self, pop: PopView) -> tuple[PopView, asyncio.Future[CrmResult] | None]:
        """The pop to send now: with the CRM's answer if it comes within
        the budget, else marked `pending` with the answer to follow."""
        query = self._query(pop)
        if query is None:
            pop = pop.model_copy(update={"crm_status": "not_found"})
        else:
            answer = self.client.lookup(query)
            if not answer.done() and self._pop_wait > 0:
                # asyncio.wait never cancels the answer: others may share it.
                await asyncio.wait({answer}, timeout=self._pop_wait)
            if not answer.done():
                self.first_pops["pending"] += 1
                return pop.model_copy(update={"crm_status": "pending"}), answer
            pop = with_crm(pop, _result(answer))
        self.first_pops[pop.crm_status] += 1
        return pop, None

    def _query(self, pop: PopView) -> CrmQuery | None:
        """The question for the caller of `pop`: their number and the
        account of the customer the directory identified."""
        customer = pop.customer
        return self.client.query(pop.caller_number,
                                 None if customer is None else customer.account)

    def follow(self, answer: asyncio.Future[CrmResult],
               update: Callable[[CrmResult], bool]) -> None:
        """Call `update` with the answer when it comes (not if the client
        closes first); it says whether the update reached a desk."""
        def settled(done: asyncio.Future[CrmResult]) -> None:
            if done.cancelled():
                return
            try:
                sent = update(_result(done))
            except Exception:  # a callback of the loop: log here, or it is lost
                log.exception("crm.pop_update_failed")
                return
            self.updates["sent" if sent else "dropped"] += 1

        answer.add_done_callback(settled)


def _result(answer: asyncio.Future[CrmResult]) -> CrmResult:
    if answer.cancelled():  # the client closed: the server is stopping
        return CrmResult("unavailable", reason="shutting down")
    error = answer.exception()
    if error is not None:  # the client never fails its futures; if it did, no CRM
        log.error("crm.lookup_broken", error=repr(error))
        return CrmResult("unavailable", reason="internal error")
    return answer.result()
