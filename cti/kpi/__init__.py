"""KPIs: pure computations over ended calls and agent states; no IO, no clock."""
