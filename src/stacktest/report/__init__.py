"""What a run did, for people: a Markdown summary and a self-contained HTML report.

Data flows one way: the run directory (``state.json``, ``events.jsonl``, load results) and
pytest's JUnit XML are read into a :class:`~stacktest.report.collect.RunReport`, which the
renderers turn into text. Nothing here talks to a running stack.
"""

from stacktest.report.collect import RunReport, collect
from stacktest.report.render import to_html, to_markdown, write_reports

__all__ = ["RunReport", "collect", "to_html", "to_markdown", "write_reports"]
