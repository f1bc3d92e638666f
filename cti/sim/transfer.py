"""AMI Atxfer: the attended transfer of Asterisk 22's bridge features, as
recording 06b shows it.

The action plays the feature code (`*2`, features.conf `atxfer`) and the
target digits into the transferer's channel (DTMFEnd, Received, no
DTMFBegin); the transferer goes on hold (the transferee gets MOH), a Local
pair to the target is created and bridged with the transferer in a new
consultation bridge while it rings. When the transferer hangs up, the
consultation bridge is merged into the original one: the target takes the
transferer's place (BridgeMerge, AttendedTransfer Result Success DestType
Bridge) and the transferer's Local pair is hung up.
"""

from __future__ import annotations

from cti.sim.channels import Bridge, Channel, Pairs, Switch, presentation
from cti.sim.dial import await_answer
from cti.sim.runtime import Runtime

FEATURE_CODE = "*2"
NO_ANSWER_S = 15.0  # features.conf atxfernoanswertimeout


def transferee_of(transferer: Channel) -> Channel | None:
    """The party the transferer is bridged with (Atxfer needs one)."""
    bridge = transferer.bridge
    if bridge is None:
        return None
    return next((m for m in bridge.members if m is not transferer), None)


async def attended_transfer(rt: Runtime, transferer: Channel, exten: str, context: str) -> None:
    switch = rt.switch
    original = transferer.bridge
    transferee = transferee_of(transferer)
    if original is None or transferee is None:
        return
    switch.set_var(transferer, "TRANSFER_CONTEXT", context)
    for digit, pause in zip(FEATURE_CODE, (0.15, 0.1), strict=True):
        _dtmf_end(switch, transferer, digit)
        await rt.sleep(pause)
    switch.emit("Hold", "call", transferer.fields())
    switch.emit("MusicOnHoldStart", "call", [*transferee.fields(), ("Class", "default")])
    for digit in exten:
        await rt.sleep(0.05)
        _dtmf_end(switch, transferer, digit)
    target, far = switch.local_pair(exten, context, linkedid=transferer.linkedid)
    for name in ("TRANSFERERNAME", "ATTENDEDTRANSFER"):
        switch.set_var(target, name, transferer.name)
    consultation = switch.bridge_create()
    for name in ("ATTENDEDTRANSFER", "TRANSFERERNAME"):
        switch.set_var(far, name, transferer.name)
    far.cid_num, far.cid_name = transferer.cid_num, transferer.cid_name
    switch.emit("NewCallerid", "call", [*far.fields(), presentation(far.cid_num)])
    if not rt.dialplan.exists(context, exten):
        target.hangup_requested = True
        switch.hangup(far)
        switch.hangup(target)
        _give_back(switch, transferer, transferee, original, consultation)
        return
    switch.local_bridge(target, far)
    rt.start_pbx(far)

    def ringing() -> None:
        _connected_line(switch, target, transferer.cid_num, transferer.cid_name)
        switch.bridge_enter(consultation, target)
        switch.set_var(target, "ATTENDEDTRANSFER", "")
        switch.dial_event("DialState", None, target, [("DialStatus", "RINGING")])
        switch.bridge_leave(transferer)
        switch.bridge_enter(consultation, transferer)
        switch.bridge_peers(consultation, (target, transferer))
        _connected_line(switch, transferer, target.cid_num, target.cid_name)

    result = await await_answer(rt, None, target, NO_ANSWER_S, ringing)
    if result != "answer":
        if transferer.bridge is consultation:
            switch.bridge_leave(transferer)
        if target.bridge is consultation:
            switch.bridge_leave(target)
        target.hangupcause = target.hangupcause or 16
        switch.hangup(target)
        _give_back(switch, transferer, transferee, original, consultation)
        return
    switch.dial_event("DialEnd", None, target, [("DialStatus", "ANSWER")])
    switch.bridge_peers(consultation, (target, transferer))
    while not (transferer.hangup_requested or target.hangup_requested or target.gone):
        await rt.wait([transferer, target], None)
    if transferer.hangup_requested and target.alive and not target.hangup_requested:
        _complete(switch, transferer, transferee, target=target, original=original,
                  consultation=consultation)
        transferee.poke()  # the transferee's Dial now watches the target
        return
    # the target hung up first: the transferer goes back to the transferee
    switch.set_var(transferer, "BRIDGEPEER", "")
    switch.bridge_leave(transferer)
    if target.bridge is consultation:
        switch.bridge_leave(target)
    if target.alive:
        # Its Hangup (and its Local partner's, and the device's NOT_INUSE)
        # as for any channel that hangs up.
        target.hangupcause = target.hangupcause or 16
        switch.hangup(target)
    _give_back(switch, transferer, transferee, original, consultation)


def _complete(switch: Switch, transferer: Channel, transferee: Channel, *, target: Channel,
              original: Bridge, consultation: Bridge) -> None:
    switch.emit("BridgeMerge", "call", [*_prefixed("To", original.fields()),
                                        *_prefixed("From", consultation.fields())])
    switch.bridge_leave(target)
    switch.bridge_enter(original, target)
    switch.set_var(transferer, "BRIDGEPEER", "")
    switch.bridge_leave(transferer)
    switch.emit("MusicOnHoldStop", "call", transferee.fields())
    switch.bridge_peers(original, (transferee, target))
    switch.emit("AttendedTransfer", "call", [
        ("Result", "Success"),
        *transferer.fields("OrigTransferer"),
        *_prefixed("Orig", original.fields()),
        *transferer.fields("SecondTransferer"),
        *_prefixed("Second", consultation.fields()),
        *transferee.fields("Transferee"),
        *target.fields("TransferTarget"),
        ("IsExternal", "No"),
        ("DestType", "Bridge"),
        ("DestBridgeUniqueid", original.uniqueid),
    ])
    transferer.hangupcause = transferer.hangupcause or 16
    partner = transferer.partner
    if partner is not None and partner.alive:
        partner.hangupcause = partner.hangupcause or 16
    switch.hangup(transferer)
    switch.bridge_destroy(consultation)
    _connected_line(switch, target, transferee.cid_num, transferee.cid_name)
    _connected_line(switch, transferee, target.cid_num, target.cid_name)


def _give_back(switch: Switch, transferer: Channel, transferee: Channel, original: Bridge,
               consultation: Bridge) -> None:
    """The transfer failed: the transferer returns to the original bridge."""
    switch.bridge_destroy(consultation)
    switch.emit("MusicOnHoldStop", "call", transferee.fields())
    if transferer.alive:
        switch.bridge_enter(original, transferer)
        switch.bridge_peers(original, original.members)
    transferee.poke()


def _dtmf_end(switch: Switch, chan: Channel, digit: str) -> None:
    switch.emit("DTMFEnd", "dtmf", [*chan.fields(), ("Digit", digit), ("DurationMs", "0"),
                                    ("Direction", "Received")])


def _connected_line(switch: Switch, chan: Channel, num: str, name: str) -> None:
    """A connected line update on a Local ;1 becomes the caller id of its
    ;2, which Asterisk only reports once that half hangs up (06b)."""
    chan.conn_num, chan.conn_name = num, name
    switch.emit("NewConnectedLine", "call", chan.fields())
    if chan.partner is not None and chan.partner.alive:
        chan.partner.caller_update = (num, name)


def _prefixed(prefix: str, pairs: Pairs) -> Pairs:
    return [(f"{prefix}{key}", value) for key, value in pairs]
