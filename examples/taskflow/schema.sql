-- taskflow's state: tasks and their steps (each a small state machine, every transition
-- recorded), an outbox for events (written in the same transaction as the state change),
-- worker heartbeats, the reducer's aggregates and stamps, and the ids of processed events.

CREATE TABLE tasks (
    uuid uuid PRIMARY KEY,
    namespace text NOT NULL,
    name text NOT NULL,
    context jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    result jsonb,
    error text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at timestamptz
);
CREATE INDEX tasks_by_namespace ON tasks (namespace, created_at, uuid);
CREATE INDEX tasks_by_status ON tasks (status);

CREATE TABLE steps (
    task_uuid uuid NOT NULL REFERENCES tasks (uuid),
    name text NOT NULL,
    position int NOT NULL,
    depends_on text[] NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0,
    max_attempts int NOT NULL,
    result jsonb,
    error text,
    worker text,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_uuid, name)
);

CREATE TABLE transitions (
    id bigserial PRIMARY KEY,
    task_uuid uuid NOT NULL,
    step text,                      -- NULL: the task itself
    from_state text,
    to_state text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX transitions_by_task ON transitions (task_uuid, id);

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    subject text NOT NULL,
    payload jsonb NOT NULL,
    available_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE workers (
    id text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    steps_done bigint NOT NULL DEFAULT 0
);

CREATE TABLE aggregates (
    namespace text PRIMARY KEY,
    completed bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    total_duration_ms double precision NOT NULL DEFAULT 0
);

CREATE TABLE stamps (
    task_uuid uuid PRIMARY KEY,
    blake3 text NOT NULL,
    stamped_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    stamp_us double precision NOT NULL
);

CREATE TABLE processed_events (
    event_id text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
