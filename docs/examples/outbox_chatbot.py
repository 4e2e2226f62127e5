"""A chat bot: commands come in, replies go out through an outbox.

The bot never waits on the Hook API: it answers a command by putting the reply in the outbox
and reads the next command at once. The outbox posts the replies in order, as fast as the hook's
quota allows, and keeps them in a SQLite file, so that a restart loses none.
"""

from __future__ import annotations

import anyio
from anyio.abc import ObjectReceiveStream

import hookapi


def reply_to(command: str) -> str | None:
    """The bot's answer to one command, or ``None`` if it has nothing to say."""
    name, _, argument = command.strip().partition(" ")
    if name == "/echo":
        return argument or "(nothing to echo)"
    if name == "/deploy":
        return f"Deploying {argument or 'main'}: I will say when it is done."
    return None


async def run_bot(
    client: hookapi.AsyncHookClient,
    commands: ObjectReceiveStream[str],
    *,
    store: hookapi.OutboxStore | str = "bot-outbox.sqlite",
) -> list[hookapi.Receipt]:
    """Answer every command until the stream ends; return what was left unsent at the end."""
    async with hookapi.Outbox(client, store=store) as outbox, commands:
        async for command in commands:
            reply = reply_to(command)
            if reply is not None:
                await outbox.put(reply)  # returns once stored; the outbox does the rest
        # Leaving the block drains for up to drain_timeout (30 s); the rest stays stored
        # and goes out first when the bot starts again.
    return await outbox.aclose()


async def main() -> None:
    """Wire the bot to your chat platform's command stream; here, three commands."""
    send, receive = anyio.create_memory_object_stream[str](100)
    async with hookapi.AsyncHookClient.from_env() as client, anyio.create_task_group() as tg:
        tg.start_soon(run_bot, client, receive)
        async with send:
            for command in ["/echo hello", "/deploy v2.1", "/unknown"]:
                await send.send(command)


if __name__ == "__main__":
    anyio.run(main)
