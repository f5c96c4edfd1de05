"""A slow weather agent built with the Python a2a-sdk's own server, for Baton's kill -9 tests
(`tests/api/pyagent.rs`). The SDK does not deduplicate by idempotency key, so every message it
is sent again is executed again: the log this agent writes shows how often that happened.

Usage: slow_agent.py PORT LOG [--work-seconds S] [--ask] [--stream]

Serves the card at /.well-known/agent-card.json (v1.0, with the SDK's v0.3 compatibility
fields) and JSON-RPC at / (v1.0 and v0.3), with the SDK's DefaultRequestHandler and
InMemoryTaskStore. Each execution appends one JSON line to LOG when it starts
({"kind": "first"|"answer", "task_id", "context_id", "text"}), then the task is `working` for S
seconds and completes with the artifact "Sunny in {city}", logged as a line of kind "done".
With --ask a new task first asks "Which city exactly?" (`input-required`); the answer is the
city. With --stream the card says `capabilities.streaming` and the agent reports its progress
while it works, as `working` status updates saying "Looking at the sky over {city} (k/n)", one
every half second. Prints "ready" once serving.
"""

import argparse
import asyncio
import json
import re
import sys

import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
    Role,
    TaskState,
)
from starlette.applications import Starlette

QUESTION = "Which city exactly?"


class SlowWeather(AgentExecutor):
    """Works `work_seconds` on every message it executes, after logging it."""

    def __init__(self, log, work_seconds, ask, stream):
        self.log = log
        self.work_seconds = work_seconds
        self.ask = ask
        self.stream = stream

    def record(self, kind, context, text):
        with open(self.log, "a", encoding="utf-8") as log:
            line = {
                "kind": kind,
                "task_id": context.task_id,
                "context_id": context.context_id,
                "text": text,
            }
            log.write(json.dumps(line) + "\n")

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        task = context.current_task
        answering = task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        if answering:
            self.record("answer", context, text)
            city = text.strip() or "Paris"
        else:
            self.record("first", context, text)
            if self.ask:
                await updater.requires_input(
                    new_text_message(
                        QUESTION,
                        context_id=task.context_id,
                        task_id=task.id,
                        role=Role.ROLE_AGENT,
                    )
                )
                return
            found = re.search(r"\bin ([A-Z][a-zA-Z]+)", text)
            city = found.group(1) if found else "Paris"
        await updater.start_work()
        if self.stream:
            steps = max(1, int(self.work_seconds / 0.5))
            for step in range(1, steps + 1):
                await asyncio.sleep(self.work_seconds / steps)
                note = f"Looking at the sky over {city} ({step}/{steps})"
                await updater.update_status(
                    TaskState.TASK_STATE_WORKING,
                    new_text_message(
                        note, context_id=task.context_id, task_id=task.id, role=Role.ROLE_AGENT
                    ),
                )
        else:
            await asyncio.sleep(self.work_seconds)
        await updater.add_artifact([Part(text=f"Sunny in {city}")], name="forecast")
        await updater.complete()
        self.record("done", context, f"Sunny in {city}")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.record("cancel", context, "")
        task = context.current_task
        if task is not None:
            await TaskUpdater(event_queue, task.id, task.context_id).cancel()


def card(port, stream):
    """The agent's card: JSON-RPC on loopback in v1.0 and v0.3 (the v0.3 interface makes the SDK
    add the v0.3 card fields: url, preferredTransport, protocolVersion)."""
    return AgentCard(
        name="Slow Python Weather",
        description="Weather forecasts for any city, slowly (Python a2a-sdk)",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url=f"http://127.0.0.1:{port}/",
                protocol_binding="JSONRPC",
                protocol_version="1.0",
            ),
            AgentInterface(
                url=f"http://127.0.0.1:{port}/",
                protocol_binding="JSONRPC",
                protocol_version="0.3",
            ),
        ],
        capabilities=AgentCapabilities(streaming=stream),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="weather",
                name="Weather forecast",
                description="The weather forecast for a city",
                tags=["weather", "forecast"],
                examples=["What is the weather in Paris?"],
            )
        ],
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--work-seconds", type=float, default=3.0)
    parser.add_argument("--ask", action="store_true")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    agent_card = card(args.port, args.stream)
    handler = DefaultRequestHandler(
        agent_executor=SlowWeather(args.log, args.work_seconds, args.ask, args.stream),
        task_store=InMemoryTaskStore(),
        agent_card=agent_card,
    )
    routes = create_agent_card_routes(agent_card) + create_jsonrpc_routes(
        handler, "/", enable_v0_3_compat=True
    )
    app = Starlette(routes=routes)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await task

    asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
