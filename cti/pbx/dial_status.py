"""How a leg the server originated ended, in Asterisk's DIALSTATUS words,
from whichever evidence Asterisk gives for it. Pure; in cti/pbx because
the reason codes and Q.850 causes are Asterisk's, like its field names.

An originated leg has no Dial application behind it, so no DIALSTATUS:
its `DialEnd` (no caller) says BUSY or CONGESTION; a ring-out has no
`DialEnd` at all, only the `OriginateResponse` reason (3) and the Q.850
cause of its `Hangup` (19); a number that does not exist gives reason 0
and, on a real trunk, cause 1 (recording 07). The first evidence that
says something wins, in that order.
"""

from __future__ import annotations

# OriginateResponse `Reason`: the last control frame Asterisk saw on the
# channel (AST_CONTROL_*): 1 hang-up, 3 ringing (rang out), 4 answer,
# 5 busy, 8 congestion; 0 is "failed", which says nothing more.
_REASONS = {1: "CHANUNAVAIL", 3: "NOANSWER", 4: "ANSWER", 5: "BUSY", 8: "CONGESTION"}
# Q.850 causes of the leg's Hangup that name what happened before answer.
# "UNALLOCATED" is no DIALSTATUS: Dial says CHANUNAVAIL for it, which would
# retry a number the network says does not exist.
_CAUSES = {
    1: "UNALLOCATED",      # unallocated (unassigned) number
    3: "UNALLOCATED",      # no route to destination
    17: "BUSY",            # user busy
    18: "NOANSWER",        # no user responding
    19: "NOANSWER",        # no answer from user (user alerted)
    20: "CHANUNAVAIL",     # subscriber absent
    21: "BUSY",            # call rejected: the person declined it
    22: "UNALLOCATED",     # number changed
    27: "CHANUNAVAIL",     # destination out of order
    28: "UNALLOCATED",     # invalid number format
    34: "CONGESTION",      # no circuit/channel available
    38: "CONGESTION",      # network out of order
    41: "CONGESTION",      # temporary failure
    42: "CONGESTION",      # switching equipment congestion
}


def originated_leg_status(dial_end: str, reason: int | None, cause: int | None) -> str:
    """The leg's status from its DialEnd status ("" if none), the reason of
    a failed OriginateResponse (None if none) and its Hangup cause (None if
    not hung up yet); "" when none of them says anything."""
    if dial_end:
        return dial_end.upper()
    if reason is not None and reason in _REASONS:
        return _REASONS[reason]
    if cause is not None:
        return _CAUSES.get(cause, "")
    return ""
