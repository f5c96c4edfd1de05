"""What the test agents built on the Python a2a-sdk's own server share (`slow_agent.py`,
`crash_agent.py`): an executor that logs each execution and cancels on request, a weather card
with JSON-RPC on loopback in v1.0 and v0.3, and serving an executor with the SDK's
DefaultRequestHandler and InMemoryTaskStore under uvicorn, printing "ready" once it listens (the
Rust tests wait for that line)."""

import asyncio
import json
import time

import uvicorn
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from google.protobuf import json_format
from starlette.applications import Starlette


class LoggingExecutor(AgentExecutor):
    """An executor that appends one JSON line to `log` per execution it records (kind,
    message_id, the `metadata.idempotencyKey` Baton sends, task_id, context_id, text, and at, in
    Unix seconds), and cancels a task when asked, logging "cancel"."""

    def __init__(self, log):
        self.log = log

    def record(self, kind, context, text):
        message = context.message
        metadata = json_format.MessageToDict(message.metadata) if message is not None else {}
        line = {
            "kind": kind,
            "message_id": message.message_id if message is not None else None,
            "idempotency_key": metadata.get("idempotencyKey"),
            "task_id": context.task_id,
            "context_id": context.context_id,
            "text": text,
            "at": time.time(),
        }
        # One write of one line per execution, so concurrent executions never interleave.
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.record("cancel", context, "")
        task = context.current_task
        if task is not None:
            await TaskUpdater(event_queue, task.id, task.context_id).cancel()


def weather_card(port, name, description, example, streaming=False):
    """A weather agent's card: JSON-RPC on loopback in v1.0 and v0.3 (the v0.3 interface makes the
    SDK add the v0.3 card fields: url, preferredTransport, protocolVersion)."""
    url = f"http://127.0.0.1:{port}/"
    return AgentCard(
        name=name,
        description=description,
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="weather",
                name="Weather forecast",
                description="The weather forecast for a city",
                tags=["weather", "forecast"],
                examples=[example],
            )
        ],
    )


def serve(port, agent_card, executor):
    """Serves `executor` under `agent_card` on 127.0.0.1:`port` until killed."""
    handler = DefaultRequestHandler(
        agent_executor=executor,
        task_store=InMemoryTaskStore(),
        agent_card=agent_card,
    )
    routes = create_agent_card_routes(agent_card) + create_jsonrpc_routes(
        handler, "/", enable_v0_3_compat=True
    )
    config = uvicorn.Config(
        Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)

    async def run():
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await task

    asyncio.run(run())
