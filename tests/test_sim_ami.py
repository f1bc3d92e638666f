"""The simulated PBX's AMI session behaviour against recording 11: login,
security events, errors, Ping, Events/Filter, global Setvar, `core restart
now` and the reconnect after it; plus the CLI entry and the comparison view
used by the conformance tests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from cti.sim import start_sim
from cti.sim.cli import parser, settings_from
from tests.ami_client import AmiClient
from tests.conformance_view import diff, recording_view
from tests.test_sim_conformance import FIXTURES


def _pairs(message: object) -> list[tuple[str, str]]:
    return [p for p in message.pairs if p[0] not in ("Timestamp",)]  # type: ignore[attr-defined]


async def test_ami_lifecycle_replies_are_those_of_recording_11() -> None:
    sim = await start_sim(port=0, login_failure_delay=0.05)
    rec = await AmiClient.connect(sim.port)
    try:
        await rec.login("on")
        bad = await AmiClient.connect(sim.port)
        reply = await bad.login("on", secret="wrong-secret")
        assert _pairs(reply)[1:] == [("ActionID", reply.action_id),
                                     ("Message", "Authentication failed")]
        await asyncio.wait_for(bad.closed.wait(), 2)
        await bad.close()
        await rec.event("InvalidPassword", AccountID="cti")

        md5 = await AmiClient.connect(sim.port)
        await md5.wait_for(lambda m: m.get("Banner") == "Asterisk Call Manager/11.0.0")
        denied = await md5.action("Ping")
        assert denied.get("Message") == "Permission denied"
        await rec.event("RequestNotAllowed", RequestType="Action: Ping")
        challenge = (await md5.action("Challenge", ("AuthType", "MD5"))).get("Challenge") or ""
        key = hashlib.md5((challenge + "cti-secret").encode()).hexdigest()
        ok = await md5.action("Login", ("AuthType", "MD5"), ("Username", "cti"), ("Key", key),
                              ("Events", "off"))
        assert ok.get("Message") == "Authentication accepted"
        pong = await md5.action("Ping")
        assert (pong.get("Ping"), bool(pong.get("Timestamp"))) == ("Pong", True)
        bye = await md5.action("Logoff")
        assert (bye.response, bye.get("Message")) == ("Goodbye", "Thanks for all the fish.")
        await md5.close()

        drv = await AmiClient.connect(sim.port)
        await drv.login("off")
        unknown = await drv.action("NoSuchAction")
        assert unknown.get("Message") == (
            "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show "
            "available commands.")
        drv.send_raw(b"Foo: bar\r\nActionID: 11-drv-noaction\r\n\r\n")
        missing = await drv.wait_for(lambda m: m.action_id == "11-drv-noaction")
        assert missing.get("Message") == "Missing action in request"
        assert (await drv.action("Originate", ("Exten", "1001"))).get("Message") == (
            "Channel not specified")
        nosuch = await drv.action("Redirect", ("Channel", "Local/nosuch-00000000;1"),
                                  ("Context", "cti-connect"), ("Exten", "1001"),
                                  ("Priority", "1"))
        assert nosuch.get("Message") == "Channel does not exist: Local/nosuch-00000000;1"
        await drv.action("Setvar", ("Variable", "X"), ("Value", "1"))
        await rec.event("VarSet", Channel="none", Variable="X", Value="1")
        drv.send_raw(b"Action: Ping\r\n\r\n")
        plain = await drv.wait_for(lambda m: m.get("Ping") == "Pong" and m.action_id is None)
        assert plain.response == "Success"

        flt = await AmiClient.connect(sim.port)
        await flt.login("on")
        await flt.action("Filter", ("Operation", "Add"), ("Filter", "Event: UserEvent"))
        await drv.action("UserEvent", ("UserEvent", "CTIHeartbeat"), ("Seq", "1"))
        off = await flt.action("Events", ("EventMask", "off"))
        assert off.get("Events") == "Off"
        await drv.action("UserEvent", ("UserEvent", "CTIHeartbeat"), ("Seq", "2"))
        on = await flt.action("Events", ("EventMask", "system,call,user"))
        assert on.get("Events") == "On"
        await drv.action("UserEvent", ("UserEvent", "CTIHeartbeat"), ("Seq", "3"))
        await flt.action("Ping")
        seen = [m.get("Seq") for m in flt.events if m.event == "UserEvent"]
        assert seen == ["1", "3"]
        assert {m.event for m in flt.events} == {"FullyBooted", "SuccessfulAuth", "UserEvent"}
        await flt.close()
        await _core_restart_as_recording_11(sim.port, rec, drv)
    finally:
        await rec.close()
        await sim.close()


async def _core_restart_as_recording_11(port: int, rec: AmiClient, drv: AmiClient) -> None:
    """The end of recording 11: no response to the Command, Shutdown to the
    events-on session, both closed; a connect reset with no banner then
    refused; the banner again, and the FullyBooted of the new boot (after
    SuccessfulAuth, `Status` first, uptime from the restart)."""
    mark = len(drv.received)
    drv.send("Command", ("Command", "core restart now"))
    shutdown = await rec.event("Shutdown")
    assert list(shutdown.pairs) == [("Event", "Shutdown"), ("Privilege", "system,all"),
                                    ("Shutdown", "Cleanly"), ("Restart", "True")]
    await asyncio.wait_for(asyncio.gather(rec.closed.wait(), drv.closed.wait()), 2)
    assert drv.received[mark:] == []
    await drv.close()
    outcomes: list[str] = []
    async with asyncio.timeout(5):
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                outcomes.append("refused")
                await asyncio.sleep(0.01)
                continue
            except ConnectionResetError:
                # accepted then reset before the connect call even returned
                outcomes.append("reset")
                await asyncio.sleep(0.01)
                continue
            try:
                banner = await reader.readline()
            except ConnectionResetError:
                banner = b""
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if banner:
                break
            outcomes.append("reset")
            await asyncio.sleep(0.01)
    assert banner == b"Asterisk Call Manager/11.0.0\r\n"
    assert outcomes[0] == "reset" and "refused" in outcomes
    assert outcomes == sorted(outcomes, key=("reset", "refused").index)
    banner_at = asyncio.get_running_loop().time()
    again = await AmiClient.connect(port)
    try:
        await again.login("on")
        in_boot_window = asyncio.get_running_loop().time() - banner_at < 0.05
        booted = await again.event("FullyBooted")
        fields = [k for k, _ in booted.pairs]
        if in_boot_window:
            # Logged in before the boot finished: the boot's own broadcast,
            # `Status` first, as in the recording.
            assert fields == ["Event", "Privilege", "Status", "Uptime", "LastReload"]
        else:  # a slow machine logged in later: the usual FullyBooted of a login
            assert sorted(fields) == ["Event", "LastReload", "Privilege", "Status", "Uptime"]
        assert booted.get("Uptime") == booted.get("LastReload") in ("0", "1", "2")
        order = [m.event for m in again.events]
        assert order.index("SuccessfulAuth") < order.index("FullyBooted")
    finally:
        await again.close()


async def test_events_off_session_gets_no_originate_response() -> None:
    sim = await start_sim(port=0, speed=50)
    drv = await AmiClient.connect(sim.port)
    rec = await AmiClient.connect(sim.port)
    try:
        await drv.login("off")
        await rec.login("on")
        await drv.action("Originate", ("Channel", "Local/0699999999@sim-customer"),
                         ("Application", "Wait"), ("Data", "1"), ("Async", "true"))
        response = await rec.event("OriginateResponse")
        assert (response.get("Response"), response.get("Reason")) == ("Failure", "5")
        assert not drv.events
    finally:
        await rec.close()
        await drv.close()
        await sim.close()


def test_comparison_view_tells_two_scenarios_apart() -> None:
    one = recording_view(FIXTURES / "01-inbound-redirect-answered.txt")
    two = recording_view(FIXTURES / "02-inbound-caller-abandons.txt")
    assert diff(one, two)
    assert not diff(one, one)


def test_cli_options_build_the_settings() -> None:
    args = parser().parse_args(["--port", "0", "--speed", "5", "--calls-per-hour", "120",
                                "--vip-share", "0.2", "--digits", "2", "--seed", "7"])
    settings = settings_from(args)
    assert (settings.port, settings.speed, settings.seed) == (0, 5.0, 7)
    assert settings.population.traffic.rate_per_hour == 120
    assert settings.population.traffic.digits == ("2",)


async def test_generated_callers_queue_and_abandon() -> None:
    from cti.sim.population import Population, Traffic

    traffic = Traffic(rate_per_hour=3600, patience_s=(2, 2), vip_share=1.0)
    sim = await start_sim(port=0, speed=50, seed=3, population=Population(traffic=traffic))
    rec = await AmiClient.connect(sim.port)
    try:
        await rec.login("on")
        queued = await rec.event("UserEvent", UserEvent="CTIQueued")
        assert queued.get("CallerIDNum") == "+33699999910"
        await rec.event("Hangup", Channel=queued.get("Channel") or "")
    finally:
        await rec.close()
        await sim.close()


async def test_unreachable_fastagi_leaves_the_call_in_the_dialplan() -> None:
    from tests.servers import free_port

    sim = await start_sim(port=0, speed=20, agi_url=f"agi://127.0.0.1:{free_port()}")
    rec = await AmiClient.connect(sim.port)
    try:
        await rec.login("on")
        await rec.action("Originate", ("Channel", "Local/ivr-hangup@sim-caller"),
                         ("Context", "ivr-inbound"), ("Exten", "0140000010"),
                         ("CallerID", '"Ivan Ivr" <+33677777777>'), ("Async", "true"))
        done = await rec.event("UserEvent", UserEvent="CTIIvrDone")
        assert done.get("CtiAgiStatus") == "FAILURE"
    finally:
        await rec.close()
        await sim.close()
