"""The FastAGI server against the bytes of recording 08 and misbehaving
clients (PANORAMISK.md items 13-16: each test fails on panoramisk 1.4)."""

from __future__ import annotations

import asyncio

import pytest

from cti.ivr.agi import AgiCommandFailed, AgiDeadChannel, AgiHangup, AgiSession
from cti.ivr.server import FastAgiServer
from tests.agi_caller import recorded_conversation


async def play_asterisk(port: int, conn: str, *, hangup_late: bool = False) -> list[str]:
    """Act as Asterisk: send the recorded env, answer each command with the
    recorded result. With hangup_late, the HANGUP line goes out only when
    the next command arrives (as the recording's timing shows it)."""
    conversation = recorded_conversation(conn)
    commands = [command for command, _ in conversation.exchange]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(conversation.env)
    received: list[str] = []
    pending_hangup = False
    for _, unit in conversation.exchange:
        raw = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
        received.append(raw.decode().rstrip("\n"))
        out = [line for line in unit if line != "HANGUP"]
        if pending_hangup:
            out.insert(0, "HANGUP")
            pending_hangup = False
        if "HANGUP" in unit:
            if hangup_late:
                pending_hangup = True
            else:
                out.append("HANGUP")
        writer.write("".join(line + "\n" for line in out).encode())
        await writer.drain()
    assert received == commands[: len(received)]
    writer.close()
    await writer.wait_closed()
    return received


async def main_flow(session: AgiSession, seen: dict[str, object]) -> None:
    seen["params"] = session.request.params
    seen["args"] = session.request.args
    await session.answer()
    seen["status"] = await session.channel_status()
    seen["caller"] = (await session.command("GET FULL VARIABLE ${CALLERID(num)}")).data
    seen["did"] = await session.get_variable("CTI_DID")
    await session.command("SET VARIABLE IVR_STEP menu")
    seen["endpos"] = (await session.command('STREAM FILE hello-world ""')).extra["endpos"]
    seen["choice"] = await session.get_data("basic-pbx-ivr-main", 5000, 1)
    await session.command('STREAM FILE you-entered ""')
    await session.say_digits("2")
    seen["account"] = await session.get_data("agent-pass", 10000, 6)
    await session.command("SET VARIABLE IVR_CHOICE 2")
    await session.command("SET VARIABLE IVR_ACCOUNT 1234")
    await session.command('VERBOSE "IVR main flow done: choice=2 account=1234" 1')
    await session.command("EXEC Playback auth-thankyou")


async def errors_flow(session: AgiSession, seen: dict[str, object]) -> None:
    seen["params"] = session.request.params
    seen["args"] = session.request.args
    await session.answer()
    await session.command('NOOP "errors flow start"')
    with pytest.raises(AgiCommandFailed) as unknown:
        await session.command("FOO BAR")
    seen["unknown"] = unknown.value.status
    with pytest.raises(AgiCommandFailed) as usage:
        await session.command("STREAM FILE")
    seen["usage"] = (usage.value.status, len(usage.value.text.splitlines()))
    seen["wait"] = (await session.command("WAIT FOR DIGIT 15000")).value
    with pytest.raises(AgiDeadChannel):
        await session.command("CHANNEL STATUS")
    seen["hung_up"] = session.hung_up
    seen["step"] = (await session.command("GET VARIABLE IVR_STEP")).value
    seen["verbose"] = (await session.command('VERBOSE "after hangup" 1')).value


async def run_flow(conn: str, flow, *, hangup_late: bool = False) -> dict[str, object]:
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def handler(session: AgiSession) -> None:
        try:
            await flow(session, seen)
        finally:
            done.set()

    server = FastAgiServer({"ivr": handler}, port=0)
    await server.start()
    try:
        await play_asterisk(server.port, conn, hangup_late=hangup_late)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await server.close()
    return seen


async def test_main_flow_of_recording_08_reads_every_result_in_step() -> None:
    seen = await run_flow("agi1", main_flow)
    assert seen["params"] == {"flow": "main"}  # the query string is not the route
    assert seen["args"] == ("0140000010",)
    assert seen["status"] == 6
    assert seen["caller"] == "+33677777777"
    assert seen["did"] is None
    assert seen["endpos"] == "11360"
    assert seen["choice"] == "2"
    assert seen["account"] == "1234"


@pytest.mark.parametrize("hangup_late", [False, True])
async def test_usage_block_and_unsolicited_hangup_keep_results_in_step(hangup_late: bool) -> None:
    seen = await run_flow("agi2", errors_flow, hangup_late=hangup_late)
    assert seen["params"] == {"flow": "errors"}
    assert seen["args"] == ("0140000011", "second arg")
    assert seen["unknown"] == 510
    assert seen["usage"] == (520, 6)
    assert seen["wait"] == -1
    assert seen["hung_up"] is True
    assert seen["step"] == 0
    assert seen["verbose"] == 1


async def _ticks_while(coro, period: float = 0.01) -> tuple[object, float]:
    """Run coro while measuring the worst delay of a periodic tick."""
    worst = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(period)
            worst = max(worst, loop.time() - start - period)

    tick = asyncio.create_task(ticker())
    try:
        result = await coro
    finally:
        stop.set()
        await tick
    return result, worst


async def test_client_closing_before_the_blank_line_does_not_freeze_the_loop() -> None:
    calls: list[str] = []

    async def handler(session: AgiSession) -> None:
        calls.append(session.request.uniqueid)

    server = FastAgiServer({"ivr": handler}, port=0, env_timeout=1.0)
    await server.start()

    async def half_env_then_close() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\nagi_network_script: ivr\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)

    try:
        _, worst = await _ticks_while(half_env_then_close())
        assert worst < 0.1
        env = recorded_conversation("agi1").env
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(env)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # handler ran, socket closed
        writer.close()
        await writer.wait_closed()
        assert calls == ["1795369761.62"]
        assert server.failed == 1
    finally:
        await server.close()


async def test_silent_client_is_dropped_after_the_environment_timeout() -> None:
    server = FastAgiServer({}, port=0, env_timeout=0.2)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await writer.wait_closed()
        assert server.failed == 1
    finally:
        await server.close()


async def test_close_cancels_running_flows_and_closes_their_sockets() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def handler(session: AgiSession) -> None:
        started.set()
        try:
            await session.command("WAIT FOR DIGIT 60000")
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = FastAgiServer({"ivr": handler}, port=0)
    await server.start()
    env = recorded_conversation("agi1").env
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(env)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(server.close(), 5)
    assert cancelled.is_set()
    assert server.active == 0
    assert await asyncio.wait_for(reader.read(), 2) == b"WAIT FOR DIGIT 60000\n"
    writer.close()
    await writer.wait_closed()


async def test_caller_gone_mid_command_ends_the_flow_with_a_hangup() -> None:
    outcome: list[str] = []

    async def handler(session: AgiSession) -> None:
        try:
            await session.get_data("menu", 5000, 1)
        except AgiHangup as exc:
            outcome.append(exc.code)
            raise

    server = FastAgiServer({"ivr": handler}, port=0)
    await server.start()
    env = recorded_conversation("agi1").env
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(env)
    await reader.readuntil(b"\n")
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        if outcome:
            break
        await asyncio.sleep(0.02)
    await server.close()
    assert outcome == ["agi_hangup"]
    assert server.completed == 1


def test_arguments_cannot_inject_a_second_command() -> None:
    from cti.ivr.agi import quote

    with pytest.raises(ValueError):
        quote("x\nHANGUP")
    assert quote('say "hi"') == '"say \\"hi\\""'
