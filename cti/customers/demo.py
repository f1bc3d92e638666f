"""Demo customers: French names, +33 numbers, about one in five VIP,
accounts, RFM segments, notes and a few past contacts each, the same for
the same seed; and the numbers the demo's simulated callers call from.

Numbers come from the ranges ARCEP sets aside for fiction (01 99 00,
02 61 91, 03 53 01, 04 65 71, 05 36 49): valid for `phonenumbers`, never
anybody's line, so a demo callback dialled on a real trunk reaches no one.
The mobile fiction range (06 39 98) is not used: `phonenumbers` calls it
invalid. A demo customer's PIN is the last four digits of the account
(`demo_pin`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Literal

from cti.customers.models import Contact, Customer
from cti.customers.pins import hash_pin
from cti.customers.store import CustomerStore
from cti.store import Store

MAX_DEMO_CUSTOMERS = 10_000
VIP_SHARE = 0.2
FICTION_RANGES = ("+3319900", "+3326191", "+3335301", "+3346571", "+3353649")
# The agents of `cti demo` (cti/demo.py names them the same way).
DEMO_AGENTS = (("1001", "Bob"), ("1002", "Carol"), ("1003", "Dave"), ("1004", "Erin"),
               ("1005", "Frank"), ("1006", "Grace"), ("1007", "Heidi"), ("1008", "Ivan"))

_FIRST = ("Camille", "Léa", "Manon", "Chloé", "Inès", "Louise", "Jade", "Emma", "Zoé",
          "Juliette", "Hélène", "Françoise", "Élodie", "Sophie", "Nathalie", "Isabelle",
          "Lucas", "Hugo", "Louis", "Gabriel", "Arthur", "Jules", "Théo", "Nathan",
          "Raphaël", "Étienne", "François", "Jérôme", "Mathieu", "Nicolas", "Olivier",
          "Benoît", "Thierry", "Marie-Claire", "Jean-Pierre", "Anne-Sophie", "Noémie",
          "Clément", "Aurélien", "Maëlle")
_LAST = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David",
         "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier",
         "Dupont", "Lambert", "Bonnet", "François", "Martinez", "Legrand", "Garnier",
         "Faure", "Rousseau", "Blanc", "Guérin", "Muller", "Henry", "Roussel", "Nicolas",
         "Perrin", "Morin", "Mathieu", "Clément", "Gauthier", "Dumont", "Lopez", "Fontaine",
         "Chevalier", "Robin", "Masson", "Le Gall", "Da Silva", "N'Diaye", "Château")
_CITIES = ("Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Bordeaux", "Lille",
           "Strasbourg", "Rennes", "Montpellier", "Nice", "Grenoble", "Dijon", "Brest")
_NOTES = ("", "", "", "Préfère être rappelé après 18 h.", "Client depuis 2009.",
          "Parle lentement, malentendant : bien articuler.", "Litige facture de mars réglé.",
          "Souhaite recevoir les offres par e-mail uniquement.",
          "A signalé une panne récurrente de la box.", "Contact privilégié : son épouse.",
          "Demande toujours le même conseiller si possible.", "Dossier de résiliation en cours.")
_VIP_NOTES = ("Compte grand public premium : décrocher en priorité.",
              "Gestionnaire dédié : Grace (1006).", "Ne jamais proposer d'offre d'entrée de gamme.",
              "Client ambassadeur, très attentif au délai de réponse.")
_DISPOSITIONS = {
    "support": ("incident résolu", "ticket ouvert", "escalade niveau 2", "conseil d'utilisation"),
    "sales": ("devis envoyé", "commande passée", "pas intéressé", "à relancer"),
}
_CHANNELS: tuple[Literal["voice", "callback", "web", "email"], ...] = (
    "voice", "callback", "web", "email")
_CHANNEL_WEIGHTS = (60, 15, 15, 10)
_DEMO_ID = re.compile(r"c-[0-9]{4,5}")
_CONTACT_NOTES = ("", "", "Client satisfait.", "Rappeler si le problème revient.",
                  "Attente longue signalée par le client.", "Transféré au niveau 2.",
                  "A demandé un geste commercial.")


def demo_customers(count: int, seed: int) -> list[Customer]:
    """`count` customers (at most 10 000), ids `c-0001`..., the same for the
    same seed. Exactly round(count / 5) of them are VIP."""
    if not 0 <= count <= MAX_DEMO_CUSTOMERS:
        raise ValueError(f"count must be between 0 and {MAX_DEMO_CUSTOMERS}")
    rng = random.Random(seed)
    width = max(4, len(str(count)))
    vips = set(rng.sample(range(count), round(count * VIP_SHARE)))
    accounts = rng.sample(range(10_000_000, 100_000_000), count)
    # At most three numbers each: 30 000 of the 50 000 fiction numbers.
    pool = iter(rng.sample(range(len(FICTION_RANGES) * 10_000), count * 3))
    customers = []
    for index in range(count):
        vip = index in vips
        phones = [_fiction_number(next(pool)) for _ in range(rng.choices((1, 2, 3),
                                                                         (70, 25, 5))[0])]
        account = str(accounts[index]) if vip or rng.random() < 0.85 else None
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        customers.append(Customer(
            id=f"c-{index + 1:0{width}d}",
            name=name,
            phones=phones,
            account=account,
            tier="vip" if vip else "standard",
            segment=_segment(rng, vip),
            notes=rng.choice(_VIP_NOTES if vip else _NOTES),
            balance=None if account is None else Decimal(rng.randint(-20_000, 500_000)) / 100,
            pin_hash=None if account is None else hash_pin(account[-4:], rng.randbytes(16)),
        ))
    return customers


def demo_pin(customer: Customer) -> str | None:
    """The PIN of a demo customer (last four digits of the account)."""
    return None if customer.account is None or customer.pin_hash is None else customer.account[-4:]


def demo_history(customer: Customer, now: float) -> list[Contact]:
    """0 to 6 past contacts of a demo customer, oldest first, before `now`
    (epoch s). The same for the same customer; only `now` moves them."""
    rng = random.Random(f"{customer.id}/{customer.name}")
    count = rng.randint(0, 6)
    ages = sorted((rng.uniform(3600, 180 * 86_400) for _ in range(count)), reverse=True)
    return [_contact(rng, customer, now - age) for age in ages]


def vip_numbers(customers: Iterable[Customer]) -> tuple[str, ...]:
    """The E.164 numbers of the VIP customers, in customer order."""
    return tuple(phone for customer in customers if customer.vip for phone in customer.phones)


def standard_numbers(customers: Iterable[Customer]) -> tuple[str, ...]:
    return tuple(phone for customer in customers if not customer.vip for phone in customer.phones)


async def load_demo(store: CustomerStore | Store, customers: Sequence[Customer], *,
                    now: float | None = None) -> None:
    """Write the demo customers and their histories (contacts dated before
    `now`, the wall clock by default). Loading again replaces the same ids
    (history and PIN locks included); demo customers (`c-0001`...) an
    earlier run left with other settings are removed when they hold a
    number or account wanted now. A conflict with any other customer raises
    (`PhoneTaken`, `AccountTaken`)."""
    directory = store if isinstance(store, CustomerStore) else CustomerStore(store.redis)
    # Earlier versions of these ids go first: under another seed, a number
    # c-0005 wants now may be held by the old c-0012, written after it.
    for customer in customers:
        await directory.remove(customer.id)
    results = await directory.put_many(customers)
    stale = {conflict.owner for conflict in results if conflict is not None}
    if stale and all(_DEMO_ID.fullmatch(owner) for owner in stale):
        for owner in stale:
            await directory.remove(owner)
        pending = [customer for customer, result in zip(customers, results, strict=True)
                   if result is not None]
        results = await directory.put_many(pending)
    for result in results:
        if result is not None:
            raise result
    moment = time.time() if now is None else now
    for customer in customers:
        for contact in demo_history(customer, moment):
            await directory.add_contact(customer.id, contact)


def _fiction_number(serial: int) -> str:
    block, line = divmod(serial, 10_000)
    prefix = FICTION_RANGES[block]
    return f"{prefix}{line:0{12 - len(prefix)}d}"


def _segment(rng: random.Random, vip: bool) -> dict[str, str | int | float]:
    recency = rng.randint(1, 60) if vip else rng.randint(1, 720)
    frequency = rng.randint(8, 60) if vip else rng.randint(1, 20)
    monetary = round(rng.uniform(2_000, 40_000) if vip else rng.uniform(20, 3_000), 2)
    r = 5 if recency <= 30 else 4 if recency <= 90 else 3 if recency <= 180 else 2 \
        if recency <= 365 else 1
    f = min(5, 1 + frequency // 5)
    m = 5 if monetary >= 5_000 else 4 if monetary >= 1_500 else 3 if monetary >= 500 else 2 \
        if monetary >= 100 else 1
    label = ("champions" if r >= 4 and f >= 4 else "loyal" if f >= 3 else
             "at_risk" if r <= 2 and f >= 2 else "hibernating" if r <= 2 else "promising")
    return {"recency_days": recency, "frequency": frequency, "monetary_eur": monetary,
            "rfm": f"{r}{f}{m}", "label": label, "city": rng.choice(_CITIES)}


def _contact(rng: random.Random, customer: Customer, at: float) -> Contact:
    channel = rng.choices(_CHANNELS, _CHANNEL_WEIGHTS)[0]
    direction: Literal["inbound", "outbound"] = (
        "outbound" if channel == "callback" else "inbound")
    service = rng.choice(("support", "support", "sales"))
    if channel == "voice" and rng.random() < 0.1:
        return Contact(at=round(at, 3), channel="voice", direction="inbound", service=service,
                       duration_s=round(rng.uniform(5, 120), 1), outcome="abandoned")
    agent_id, agent_name = rng.choice(DEMO_AGENTS)
    talk = rng.uniform(60, 900) if channel in ("voice", "callback") else rng.uniform(120, 600)
    return Contact(
        at=round(at, 3), channel=channel, direction=direction, service=service,
        agent_id=agent_id, agent_name=agent_name, duration_s=round(talk, 1),
        outcome="handled", disposition=rng.choice(_DISPOSITIONS[service]),
        notes=rng.choice(_CONTACT_NOTES),
    )
