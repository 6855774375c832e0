"""Settings from the environment (set by the stack file)."""

from __future__ import annotations

import os


def database_url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/taskflow")


def nats_url() -> str:
    return os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


STEPS_STREAM = "TASKFLOW_STEPS"
STEPS_SUBJECT = "taskflow.steps"
EVENTS_STREAM = "TASKFLOW_EVENTS"
EVENTS_SUBJECTS = "taskflow.events.>"
WORKFLOWS_STREAM = "TASKFLOW_WORKFLOWS"
WORKFLOWS_SUBJECTS = ["workflow.completed", "workflow.failed"]
#: How long a worker may hold a step message before it is delivered again.
ACK_WAIT = float(os.environ.get("TASKFLOW_ACK_WAIT", "3"))
RETRY_BACKOFF = float(os.environ.get("TASKFLOW_RETRY_BACKOFF", "0.2"))
