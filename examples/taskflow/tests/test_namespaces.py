"""Category 2: namespace isolation under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from taskflow.client import OrchestrationClient

from stacktest import eventually


def test_four_namespaces_never_see_each_other(api_url, namespace) -> None:
    spaces = [f"{namespace}_{i}" for i in range(4)]

    def create(space: str, n: int) -> tuple[str, str]:
        with OrchestrationClient(api_url) as c:
            return space, c.create_task(space, "linear_workflow", {"even_number": 2 * n}).task_uuid

    with ThreadPoolExecutor(max_workers=20) as pool:
        created = list(
            pool.map(lambda args: create(*args), [(s, n) for s in spaces for n in range(5)])
        )
    mine = {s: {u for space, u in created if space == s} for s in spaces}

    with OrchestrationClient(api_url) as c:
        for space in spaces:
            for task_uuid in mine[space]:
                assert c.wait_for_completion(task_uuid, timeout=30).status == "complete"
        for space in spaces:
            listed = {t["task_uuid"] for t in c.all_tasks(space)}
            assert listed == mine[space]
            assert {t["namespace"] for t in c.all_tasks(space, "complete")} == {space}

        def aggregates_settled() -> dict[str, dict]:
            rows = {n["namespace"]: n for n in c.namespaces() if n["namespace"] in spaces}
            assert all(rows[s]["aggregates"]["completed"] == 5 for s in spaces), rows
            return rows

        rows = eventually(aggregates_settled, timeout=15)
    for space in spaces:
        assert rows[space]["tasks"] == rows[space]["complete"] == 5
        assert rows[space]["aggregates"]["failed"] == 0


def test_pagination_walks_a_namespace_without_gaps(client, namespace) -> None:
    made = {
        client.create_task(namespace, "diamond_workflow", {"value": n}).task_uuid for n in range(7)
    }
    seen, cursor, pages = [], None, 0
    while True:
        page = client.list_tasks(namespace, limit=3, cursor=cursor)
        seen += [t["task_uuid"] for t in page["tasks"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7 and set(seen) == made
