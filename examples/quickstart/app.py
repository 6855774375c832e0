"""A small HTTP service that uses Postgres, Valkey and NATS, for the quickstart demo.

POST /visit {"who": "..."} inserts a row (Postgres), counts it (Valkey) and
publishes an event (NATS JetStream), answering with what each of them said.
GET /health answers 200 only when all three answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator

import nats
import psycopg
import redis.asyncio as redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class Deps:
    db: psycopg.AsyncConnection
    cache: redis.Redis
    bus: nats.NATS
    js: object


deps = Deps()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await startup()
    try:
        yield
    finally:
        await shutdown()


async def startup() -> None:
    deps.db = await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True)
    deps.cache = redis.from_url(os.environ["REDIS_URL"])
    deps.bus = await nats.connect(os.environ["NATS_URL"])
    deps.js = deps.bus.jetstream()
    await deps.js.add_stream(name="VISITS", subjects=["visits.>"])


async def shutdown() -> None:
    await deps.bus.drain()
    await deps.cache.aclose()
    await deps.db.close()


async def health(request: Request) -> JSONResponse:
    checks = {}
    try:
        await deps.db.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = str(exc)
    try:
        checks["valkey"] = "ok" if await deps.cache.ping() else "no PONG"
    except Exception as exc:
        checks["valkey"] = str(exc)
    checks["nats"] = "ok" if deps.bus.is_connected else "disconnected"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(checks, status_code=200 if healthy else 503)


async def visit(request: Request) -> JSONResponse:
    body = await request.json()
    who = str(body.get("who", "anonymous"))
    cur = await deps.db.execute("INSERT INTO visits (who) VALUES (%s) RETURNING id", (who,))
    row = await cur.fetchone()
    count = await deps.cache.incr(f"visits:{who}")
    ack = await deps.js.publish(f"visits.{who}", json.dumps({"id": row[0], "who": who}).encode())
    return JSONResponse({"id": row[0], "count": count, "stream": ack.stream, "seq": ack.seq})


app = Starlette(
    routes=[Route("/health", health), Route("/visit", visit, methods=["POST"])],
    lifespan=lifespan,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")
