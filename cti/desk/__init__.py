"""The agent desk: login, the `/agent` page, the `/ws/agent` protocol, the
screen pop and the disposition written to the customer's history."""

from cti.desk.feature import DeskFeature, install

__all__ = ["DeskFeature", "install"]
