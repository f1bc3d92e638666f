"""A phone's hold button, as Asterisk 22 reports it: `Hold` on the phone's
channel in the bridge and music on hold for the party bridged with it (the
pair that opens recording 06b's attended transfer); `Unhold` and
`MusicOnHoldStop` when the phone takes the call back.
"""

from __future__ import annotations

from cti.sim.channels import Channel, Switch


def press_hold(switch: Switch, device: str, on: bool) -> Channel | None:
    """Put the call of phone `device` on hold (`on`) or take it back. The
    phone's channel is its bridged Local `;1`; None when it is in no call."""
    chan = next((c for c in switch.of_device(device) if c.bridge is not None), None)
    if chan is None or chan.bridge is None:
        return None
    switch.emit("Hold" if on else "Unhold", "call", chan.fields())
    for peer in chan.bridge.members:
        if peer is chan:
            continue
        if on:
            switch.emit("MusicOnHoldStart", "call", [*peer.fields(), ("Class", "default")])
        else:
            switch.emit("MusicOnHoldStop", "call", peer.fields())
    return chan
