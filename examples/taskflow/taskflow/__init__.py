"""taskflow: a small workflow system (orchestrator, workers, reducer) over Postgres and NATS.

It is stacktest's reference system: a realistic multi-service application whose
integration suite (examples/taskflow/tests) runs against the real stack.
"""
