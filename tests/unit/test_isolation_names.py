from __future__ import annotations

import re
import subprocess
import sys

from stacktest.isolation.names import slug, unique_name


def test_unique_names_are_readable_identifiers() -> None:
    name = unique_name("test_checkout[EUR-2 items]")
    assert re.fullmatch(r"t_checkout_eur_2_items_[a-z0-9]{5}", name), name
    assert unique_name("test_x") != unique_name("test_x")


def test_slug_is_bounded_and_never_empty() -> None:
    assert len(slug("test_" + "very_long_name" * 10)) <= 32
    assert slug("test_") == "test"
    assert slug("!!!") == "x"


def test_plugin_import_is_cheap() -> None:
    heavy = ["psycopg", "httpx", "typer", "rich", "stacktest.engine.runtime", "stacktest.stack"]
    code = (
        "import sys, stacktest.pytest_plugin; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
