"""Text and HTML summaries of a model and of a build.

``from xbkg.report import write_report, model_report, report_html`` works as before the layered
layout (those names used to live in the module ``xbkg.report``).
"""

from xbkg.report.html import STYLE, model_report, report_html, write_report

__all__ = ["write_report", "model_report", "report_html", "STYLE"]
