"""Drives Baton as an A2A agent with the Python a2a-sdk's client, through a question and an
answer, and prints what it saw as one JSON object (the Rust test `tests/api/sdk.rs` asserts on
it).

Usage: drive_baton.py BASE_URL PROMPT ANSWER [--version 1.0|0.3] [--streaming]

The card is read with the SDK's A2ACardResolver from BASE_URL/.well-known/agent-card.json.
With --version 0.3 the card's v1.0 interface is dropped before the client is made, so the SDK
builds its v0.3 client from the card's v0.3 compatibility fields (url, preferredTransport,
protocolVersion) instead. With --streaming the client streams (SendStreamingMessage or
message/stream) and folds the status and artifact updates into the task it was sent first.
"""

import argparse
import asyncio
import json
import sys

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.helpers.proto_helpers import get_artifact_text, get_message_text
from a2a.types import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH


async def send(client, text, task_id=None, context_id=None):
    """Sends one message; returns the task the agent answered with."""
    message = Message(
        message_id=f"m-{task_id or 'new'}",
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
    )
    if task_id:
        message.task_id = task_id
    if context_id:
        message.context_id = context_id
    task = None
    async for response in client.send_message(SendMessageRequest(message=message)):
        if response.HasField("task"):
            if task is not None:
                raise SystemExit("the task was sent twice in one stream")
            task = response.task
        elif task is None:
            raise SystemExit(f"an update before the task: {response}")
        elif response.HasField("status_update"):
            task.status.CopyFrom(response.status_update.status)
        elif response.HasField("artifact_update"):
            task.artifacts.append(response.artifact_update.artifact)
    if task is None:
        raise SystemExit("the agent answered without a task")
    return task


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("prompt")
    parser.add_argument("answer")
    parser.add_argument("--version", default="1.0", choices=["1.0", "0.3"])
    parser.add_argument("--streaming", action="store_true")
    args = parser.parse_args()

    async with httpx.AsyncClient(timeout=60) as http:
        if args.version == "1.0":
            card = await A2ACardResolver(http, args.base_url).get_agent_card()
        else:
            raw = (await http.get(f"{args.base_url}{AGENT_CARD_WELL_KNOWN_PATH}")).json()
            raw.pop("supportedInterfaces", None)
            card = parse_agent_card(raw)
        client = ClientFactory(ClientConfig(streaming=args.streaming, httpx_client=http)).create(card)

        asked = await send(client, args.prompt)
        question = get_message_text(asked.status.message)
        done = await send(client, args.answer, asked.id, asked.context_id)
        got = await client.get_task(GetTaskRequest(id=asked.id))
        print(
            json.dumps(
                {
                    "card_name": card.name,
                    "streams": card.capabilities.streaming,
                    "interface_version": [i.protocol_version for i in card.supported_interfaces],
                    "asked_state": TaskState.Name(asked.status.state),
                    "question": question,
                    "task_id": asked.id,
                    "context_id": asked.context_id,
                    "done_state": TaskState.Name(done.status.state),
                    "done_task_id": done.id,
                    "artifact": "\n".join(get_artifact_text(a) for a in done.artifacts),
                    "get_state": TaskState.Name(got.status.state),
                    "get_artifact": "\n".join(get_artifact_text(a) for a in got.artifacts),
                }
            )
        )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # the Rust test shows this text when the run fails
        print(f"drive_baton.py failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
