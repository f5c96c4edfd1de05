"""A slow weather agent built with the Python a2a-sdk's own server, for Baton's kill -9 tests
(`tests/api/pyagent.rs`). The SDK does not deduplicate by idempotency key, so every message it
is sent again is executed again: the log this agent writes shows how often that happened.

Usage: slow_agent.py PORT LOG [--work-seconds S] [--ask] [--stream]

Serves the card at /.well-known/agent-card.json (v1.0, with the SDK's v0.3 compatibility
fields) and JSON-RPC at / (v1.0 and v0.3), with the SDK's DefaultRequestHandler and
InMemoryTaskStore. Each execution appends one JSON line to LOG when it starts
(kind "first" or "answer", with the fields `sdk_server.LoggingExecutor` writes), then the task is `working` for S
seconds and completes with the artifact "Sunny in {city}", logged as a line of kind "done".
With --ask a new task first asks "Which city exactly?" (`input-required`); the answer is the
city. With --stream the card says `capabilities.streaming` and the agent reports its progress
while it works, as `working` status updates saying "Looking at the sky over {city} (k/n)", one
every half second. Prints "ready" once serving.
"""

import argparse
import asyncio
import re

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Part, Role, TaskState

from sdk_server import LoggingExecutor, serve, weather_card

QUESTION = "Which city exactly?"


class SlowWeather(LoggingExecutor):
    """Works `work_seconds` on every message it executes, after logging it."""

    def __init__(self, log, work_seconds, ask, stream):
        super().__init__(log)
        self.work_seconds = work_seconds
        self.ask = ask
        self.stream = stream

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--work-seconds", type=float, default=3.0)
    parser.add_argument("--ask", action="store_true")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    agent_card = weather_card(
        args.port,
        "Slow Python Weather",
        "Weather forecasts for any city, slowly (Python a2a-sdk)",
        "What is the weather in Paris?",
        streaming=args.stream,
    )
    executor = SlowWeather(args.log, args.work_seconds, args.ask, args.stream)
    serve(args.port, agent_card, executor)


if __name__ == "__main__":
    main()
