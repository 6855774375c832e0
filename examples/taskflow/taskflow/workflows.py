"""Workflow templates: DAGs of steps, their handlers, and validation of the input context.

Handlers are pure functions of the task's context and their dependencies' results, so a
step can be re-run after a crash and give the same result. A handler raises StepFailed
for a failure that may pass on retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class StepFailed(Exception):
    """The step failed this time; it may be retried."""


class InvalidContext(ValueError):
    """The input cannot run this workflow; the message says why."""


Handler = Callable[[Mapping[str, Any], Mapping[str, Any], int], Any]


@dataclass(frozen=True)
class Step:
    name: str
    handler: Handler
    depends_on: tuple[str, ...] = ()
    max_attempts: int = 3


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]
    validate: Callable[[Mapping[str, Any]], None]
    description: str = ""

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def roots(self) -> list[str]:
        return [s.name for s in self.steps if not s.depends_on]

    def leaves(self) -> list[str]:
        used = {d for s in self.steps for d in s.depends_on}
        return [s.name for s in self.steps if s.name not in used]


def _number(context: Mapping[str, Any], key: str) -> int:
    if key not in context:
        raise InvalidContext(f"context needs {key!r}")
    value = context[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidContext(f"context.{key} must be an integer, not {value!r}")
    return value


# -- linear: even_number -> square -> add 10 -> multiply by 3 -> divide by 2 ------------------
def _validate_linear(context: Mapping[str, Any]) -> None:
    n = _number(context, "even_number")
    if n % 2:
        raise InvalidContext(f"context.even_number must be even, got {n}")
    if abs(n) > 1_000_000:
        raise InvalidContext("context.even_number must be within +-1,000,000")


LINEAR = Workflow(
    "linear_workflow",
    (
        Step("square", lambda ctx, deps, attempt: ctx["even_number"] ** 2),
        Step("add", lambda ctx, deps, attempt: deps["square"] + 10, ("square",)),
        Step("multiply", lambda ctx, deps, attempt: deps["add"] * 3, ("add",)),
        Step("divide", lambda ctx, deps, attempt: deps["multiply"] // 2, ("multiply",)),
    ),
    _validate_linear,
    "mathematical_sequence: ((n^2 + 10) * 3) / 2",
)


# -- diamond: start -> (left, right) -> join ----------------------------------------------------
def _validate_value(context: Mapping[str, Any]) -> None:
    _number(context, "value")


DIAMOND = Workflow(
    "diamond_workflow",
    (
        Step("start", lambda ctx, deps, attempt: ctx["value"] + 1),
        Step("left", lambda ctx, deps, attempt: deps["start"] * 2, ("start",)),
        Step("right", lambda ctx, deps, attempt: deps["start"] + 100, ("start",)),
        Step("join", lambda ctx, deps, attempt: deps["left"] + deps["right"], ("left", "right")),
    ),
    _validate_value,
    "start = v+1; left = 2*start; right = start+100; join = left+right",
)


# -- tree: root -> (a, b) -> (a1, a2, b1, b2) -> merge ---------------------------------------
TREE = Workflow(
    "tree_workflow",
    (
        Step("root", lambda ctx, deps, attempt: ctx["value"]),
        Step("a", lambda ctx, deps, attempt: deps["root"] + 1, ("root",)),
        Step("b", lambda ctx, deps, attempt: deps["root"] + 2, ("root",)),
        Step("a1", lambda ctx, deps, attempt: deps["a"] * 10, ("a",)),
        Step("a2", lambda ctx, deps, attempt: deps["a"] * 20, ("a",)),
        Step("b1", lambda ctx, deps, attempt: deps["b"] * 30, ("b",)),
        Step("b2", lambda ctx, deps, attempt: deps["b"] * 40, ("b",)),
        Step(
            "merge",
            lambda ctx, deps, attempt: deps["a1"] + deps["a2"] + deps["b1"] + deps["b2"],
            ("a1", "a2", "b1", "b2"),
        ),
    ),
    _validate_value,
    "a = v+1, b = v+2; merge = 10a + 20a + 30b + 40b",
)


# -- mixed DAG: fetch -> (parse, audit); parse -> (enrich, score);
#    (enrich, score, audit) -> publish
MIXED = Workflow(
    "mixed_dag_workflow",
    (
        Step("fetch", lambda ctx, deps, attempt: ctx["value"] * 2),
        Step("parse", lambda ctx, deps, attempt: deps["fetch"] + 3, ("fetch",)),
        Step("audit", lambda ctx, deps, attempt: deps["fetch"] % 7, ("fetch",)),
        Step("enrich", lambda ctx, deps, attempt: deps["parse"] * 5, ("parse",)),
        Step("score", lambda ctx, deps, attempt: deps["parse"] - 1, ("parse",)),
        Step(
            "publish",
            lambda ctx, deps, attempt: deps["enrich"] + deps["score"] + deps["audit"],
            ("enrich", "score", "audit"),
        ),
    ),
    _validate_value,
    "fetch = 2v; parse = fetch+3; audit = fetch%7; publish = 5*parse + parse-1 + audit",
)


# -- order fulfillment: validate -> reserve -> charge (may fail, retried) -> ship ----------------
def _validate_order(context: Mapping[str, Any]) -> None:
    items = context.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidContext("context.items must be a non-empty list of {sku, quantity}")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("sku"):
            raise InvalidContext(f"context.items[{i}] needs a sku")
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or quantity < 1:
            raise InvalidContext(f"context.items[{i}].quantity must be a positive integer")
    failures = context.get("payment_failures", 0)
    if not isinstance(failures, int) or failures < 0:
        raise InvalidContext("context.payment_failures must be a whole number")


def _charge(ctx: Mapping[str, Any], deps: Mapping[str, Any], attempt: int) -> Any:
    if attempt <= ctx.get("payment_failures", 0):
        raise StepFailed(f"payment declined (attempt {attempt})")
    return {"charged_cents": deps["reserve_inventory"]["total_cents"], "attempt": attempt}


ORDER = Workflow(
    "order_fulfillment",
    (
        Step(
            "validate",
            lambda ctx, deps, attempt: {"lines": len(ctx["items"])},
        ),
        Step(
            "reserve_inventory",
            lambda ctx, deps, attempt: {
                "reserved": sorted(i["sku"] for i in ctx["items"]),
                "total_cents": sum(i["quantity"] * 250 for i in ctx["items"]),
            },
            ("validate",),
        ),
        Step("charge_payment", _charge, ("reserve_inventory",), max_attempts=3),
        Step(
            "ship",
            lambda ctx, deps, attempt: {
                "shipped": True,
                "paid": deps["charge_payment"]["charged_cents"],
            },
            ("charge_payment",),
        ),
    ),
    _validate_order,
    "payment_failures = N makes the charge fail N times (3 attempts, then the task errors)",
)

WORKFLOWS: dict[str, Workflow] = {w.name: w for w in (LINEAR, DIAMOND, TREE, MIXED, ORDER)}
ALIASES = {"mathematical_sequence": "linear_workflow"}


def get(name: str) -> Workflow | None:
    return WORKFLOWS.get(ALIASES.get(name, name))


def final_result(workflow: Workflow, results: Mapping[str, Any]) -> Any:
    leaves = workflow.leaves()
    return results[leaves[0]] if len(leaves) == 1 else {leaf: results[leaf] for leaf in leaves}
