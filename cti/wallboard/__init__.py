"""The supervisor wallboard: live KPIs, `/supervisor`, `/ws/supervisor`,
supervisor actions, KPI metrics and queue_log lines."""

from cti.wallboard.feature import WallboardFeature, install

__all__ = ["WallboardFeature", "install"]
