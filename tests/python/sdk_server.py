"""What the test agents built on the Python a2a-sdk's own server share (`slow_agent.py`,
`crash_agent.py`): a weather card with JSON-RPC on loopback in v1.0 and v0.3, and serving an
executor with the SDK's DefaultRequestHandler and InMemoryTaskStore under uvicorn, printing
"ready" once it listens (the Rust tests wait for that line)."""

import asyncio

import uvicorn
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette


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
