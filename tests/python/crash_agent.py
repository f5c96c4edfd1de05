"""A travel-weather agent built with the Python a2a-sdk's own server, for Baton's crash harness
(`tests/api/crash.rs`). The SDK does not deduplicate by idempotency key: every message it is sent
again is executed again, and the log this agent writes shows it.

Usage: crash_agent.py PORT LOG [--seed N]

Serves the card at /.well-known/agent-card.json (v1.0, with the SDK's v0.3 compatibility
fields) and JSON-RPC at / (v1.0 and v0.3), with the SDK's DefaultRequestHandler and
InMemoryTaskStore. A new task thinks briefly (0.1-0.5 s), then asks "Which city exactly?"
(`input-required`); the answer is the city: the task works on it for 0.5-2.5 s and completes with
the artifact "Sunny in {city}". The pauses are drawn from a PRNG seeded with the seed and the
message id, so a run is reproducible. Every execution appends one JSON line to LOG when it starts
(kind "first" or "answer"), and one when it ends (kind "asked" after the question, "done" after
the work); a cancel one of kind "cancel". Each line has: kind, message_id, idempotency_key (the
`metadata.idempotencyKey` Baton sends), task_id, context_id, text, and at (Unix seconds, so the
test can tell which executions a kill found in flight). Prints "ready" once serving.
"""

import argparse
import asyncio
import random

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Part, Role, TaskState

from sdk_server import LoggingExecutor, serve, weather_card

QUESTION = "Which city exactly?"


class CrashWeather(LoggingExecutor):
    """Asks for the city on a new task, then works a while on the answer; logs every execution."""

    def __init__(self, log, seed):
        super().__init__(log)
        self.seed = seed

    def pause(self, context, low, high):
        """A pause in [low, high) seconds, the same for the same message in every run."""
        message_id = context.message.message_id if context.message is not None else ""
        return random.Random(f"{self.seed}/{message_id}").uniform(low, high)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        task = context.current_task
        answering = task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        if not answering:
            self.record("first", context, text)
            await updater.start_work()
            await asyncio.sleep(self.pause(context, 0.1, 0.5))
            await updater.requires_input(
                new_text_message(
                    QUESTION,
                    context_id=task.context_id,
                    task_id=task.id,
                    role=Role.ROLE_AGENT,
                )
            )
            self.record("asked", context, QUESTION)
            return
        self.record("answer", context, text)
        city = text.strip()
        await updater.start_work()
        await asyncio.sleep(self.pause(context, 0.5, 2.5))
        await updater.add_artifact([Part(text=f"Sunny in {city}")], name="forecast")
        await updater.complete()
        self.record("done", context, f"Sunny in {city}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    agent_card = weather_card(
        args.port,
        "Crash Python Weather",
        "Weather forecasts for any city (Python a2a-sdk)",
        "What is the weather forecast?",
    )
    serve(args.port, agent_card, CrashWeather(args.log, args.seed))


if __name__ == "__main__":
    main()
