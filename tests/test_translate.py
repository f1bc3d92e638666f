"""Translator edge cases that the recordings alone do not pin down."""

from __future__ import annotations

from cti.pbx import events as ev
from cti.pbx.translate import Translator
from cti.pbx.wire import parse_message


def msg(text: str):  # type: ignore[no-untyped-def]
    return parse_message(text.replace("\n", "\r\n").encode())


def test_list_answers_other_than_core_show_channels_leave_nothing_pending() -> None:
    translator = Translator()
    for round_ in range(50):
        aid = f"q-{round_}"
        translator.feed(msg(f"Response: Success\nActionID: {aid}\nEventList: start\n"
                            "Message: Queue status will follow"), 1.0)
        translator.feed(msg(f"Event: QueueStatusComplete\nActionID: {aid}\n"
                            "EventList: Complete\nListItems: 0"), 1.0)
        aid = f"d-{round_}"
        translator.feed(msg(f"Response: Success\nActionID: {aid}\nEventList: start\n"
                            "Message: Device State Changes will follow"), 1.0)
        translator.feed(msg(f"Event: DeviceStateListComplete\nActionID: {aid}\n"
                            "EventList: Complete\nListItems: 0"), 1.0)
    assert translator.pending_lists == 0


def test_core_show_channels_still_gives_its_snapshot_when_complete() -> None:
    translator = Translator()
    translator.feed(msg("Response: Success\nActionID: c1\nEventList: start\n"
                        "Message: Channels will follow"), 5.0)
    produced = translator.feed(msg("Event: CoreShowChannelsComplete\nActionID: c1\n"
                                   "EventList: Complete\nListItems: 0"), 6.0)
    assert produced == [ev.ChannelsSnapshot(6.0, 5.0, ())]
    assert translator.pending_lists == 0


def test_keys_without_the_usual_space_are_still_read() -> None:
    message = msg("Event: Hangup\nCause:16\n Odd : x")
    assert message.get("cause") == "16"
    assert message.get("Odd") == "x"
