"""Load: open-model arrival-rate load with honest percentiles and thresholds.

    from stacktest.load import Phase, run_load

    async def create(session):
        await session.post("/v1/tasks", json={...}, name="create", expect=201)

    result = run_load(create, base_url, [Phase("warm", "5s", 5), Phase("peak", "10s", 50)],
                      thresholds={"http_req_duration{name:create}": ["p(95)<200"]})

See docs/load.md.
"""

from __future__ import annotations

from stacktest.load.phases import Phase
from stacktest.load.results import LoadResult
from stacktest.load.runner import LoadTest, run_load
from stacktest.load.session import Session

__all__ = ["LoadResult", "LoadTest", "Phase", "Session", "run_load"]
