"""Storage: the Redis connection (or the in-process store of the demo)."""

from cti.store.connection import Store, open_store

__all__ = ["Store", "open_store"]
