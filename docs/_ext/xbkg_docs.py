"""Sphinx directives that generate the reference pages from the code, so they cannot drift.

``.. xbkg-cli::``
    The ``--help`` text of the ``xbkg`` command and of each subcommand, from
    :func:`xbkg.cli.build_parser`; each gets a section titled ``xbkg <name>``.
``.. xbkg-api::``
    One section per public module (found by walking the package) with ``automodule`` of its
    ``__all__``; objects re-exported by ``xbkg`` are documented there only.
``.. xbkg-markdown:: FILE``
    A Markdown file written by a script (``benchmarks/run_all.py`` writes
    ``docs/benchmarks.md``), converted to reST by :func:`markdown_to_rst`: the page shows the
    figures of the last benchmark run, not a copy.

Docstrings write absolute values as ``|x|`` (``|DEC| > 90 deg``), which reST reads as an
undefined substitution; :func:`escape_bars` escapes them outside literals before autodoc
renders a docstring.
"""

from __future__ import annotations

import argparse
import re
from functools import partial

from docutils import nodes
from docutils.parsers.rst import Directive

HELP_WIDTH = 88


def _fixed_width(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.formatter_class = partial(argparse.HelpFormatter, width=HELP_WIDTH)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Subcommand name -> its parser, in declaration order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_texts() -> list[tuple[str, str, str]]:
    """``(name, one-line help, --help text)`` of the command and of every subcommand."""
    from xbkg.cli import build_parser

    parser = _fixed_width(build_parser())
    out = [("xbkg", parser.description or "", parser.format_help())]
    summaries = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
    for name, sub in subcommands(parser).items():
        out.append((f"xbkg {name}", summaries.get(name, ""), _fixed_width(sub).format_help()))
    return out


class XbkgCliDirective(Directive):
    """Sections with the ``--help`` output of ``xbkg`` and its subcommands."""

    has_content = False

    def run(self):
        result = []
        for title, summary, text in help_texts():
            section = nodes.section(ids=[nodes.make_id(f"cli-{title}")], names=[title])
            section += nodes.title(text=title)
            if summary:
                summary = summary.replace("``", "").rstrip(".")
                section += nodes.paragraph(text=summary[0].upper() + summary[1:] + ".")
            block = nodes.literal_block(text=text.rstrip(), language="text")
            section += block
            result.append(section)
        return result


# ---------------------------------------------------------------------------------------------
# API reference

#: Modules in pipeline order (STYLE.md: the folder reads like the pipeline); modules not named
#: here follow alphabetically, so a new module is documented without editing the docs.
PIPELINE_ORDER = [
    "xbkg", "xbkg.defaults", "xbkg.datastore", "xbkg.events", "xbkg.survey", "xbkg.pointing",
    "xbkg.validate", "xbkg.geometry", "xbkg.fov", "xbkg.erfa_context", "xbkg.iers_cache",
    "xbkg.selection", "xbkg.sources", "xbkg.exclusion", "xbkg.excluded_area", "xbkg.grouping",
    "xbkg.thresholds", "xbkg.binning", "xbkg.histogram", "xbkg.reduce", "xbkg.exposure",
    "xbkg.model", "xbkg.smoothing", "xbkg.make", "xbkg.update", "xbkg.conditions",
    "xbkg.conditional", "xbkg.parallel", "xbkg.lazy_dask_array", "xbkg.evaluate",
    "xbkg.interpolate", "xbkg.predict",
    "xbkg.accessor", "xbkg.summary", "xbkg.plotting", "xbkg.report", "xbkg.compare",
    "xbkg.validation", "xbkg.validation_plots", "xbkg.simulate", "xbkg.cli", "xbkg.io",
    "xbkg.io.netcdf", "xbkg.io.gadf", "xbkg.io.hduindex", "xbkg.io.products", "xbkg.io.perrun",
    "xbkg.io.apply", "xbkg.io.groups", "xbkg.io.regions", "xbkg.io.catalogs", "xbkg.io.reports",
    "xbkg.io.gammapy", "xbkg.io.dl3", "xbkg.io.fitstable", "xbkg.io.fitswrite", "xbkg.io.atomic",
    "xbkg.io.plaintable", "xbkg.io.safety",
]
_SKIP = {"xbkg.__main__", "xbkg._version"}


def public_modules() -> list[str]:
    """Every module of the package except private ones, in :data:`PIPELINE_ORDER`."""
    import pkgutil

    import xbkg

    names = {"xbkg"} | {m.name for m in pkgutil.walk_packages(xbkg.__path__, "xbkg.")}
    names = {n for n in names if n not in _SKIP and not n.rsplit(".", 1)[-1].startswith("_")}
    known = [n for n in PIPELINE_ORDER if n in names]
    return known + sorted(names - set(known))


def _home(module_name: str, name: str, obj) -> str:
    """Where an exported object is documented: ``xbkg`` for the top-level API, else the module
    that defines it (re-exports elsewhere are skipped, avoiding duplicate descriptions)."""
    import xbkg

    if name in xbkg.__all__ and getattr(xbkg, name, None) is obj:
        return "xbkg"
    return getattr(obj, "__module__", None) or module_name


def api_rst(module_name: str) -> str:
    import importlib

    module = importlib.import_module(module_name)
    exclude = sorted(
        name for name in getattr(module, "__all__", [])
        if hasattr(getattr(module, name), "__module__")
        and _home(module_name, name, getattr(module, name)) != module_name
    )
    lines = [module_name, "-" * len(module_name), "", f".. automodule:: {module_name}",
             "   :members:"]
    if exclude:
        lines.append("   :exclude-members: " + ", ".join(exclude))
    return "\n".join(lines) + "\n\n"


class XbkgApiDirective(Directive):
    """One section per public module with ``automodule`` of its ``__all__``."""

    has_content = False

    def run(self):
        from docutils.statemachine import StringList
        from sphinx.util.nodes import nested_parse_with_titles

        text = "".join(api_rst(name) for name in public_modules())
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(text.splitlines(), "<xbkg-api>"),
                                 container)
        return container.children


# ---------------------------------------------------------------------------------------------
# Markdown written by scripts

_INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def _md_inline(text: str) -> str:
    """Markdown inline code (`x`) -> reST literal (``x``); bold is the same in both."""
    return _INLINE_CODE.sub(r"``\1``", text)


def _md_table(rows: list[str]) -> list[str]:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    cells = [c for c in cells if not all(set(x) <= set("-: ") for x in c)]  # separator row
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in cells:
        out.append(f"   * - {_md_inline(row[0]) or ' '}")
        out += [f"     - {_md_inline(c) or ' '}" for c in row[1:]]
    return out + [""]


def markdown_to_rst(text: str) -> str:
    r"""The subset of Markdown the benchmark report uses (paragraphs, ``*`` lists, pipe
    tables, inline code, bold, HTML comments) as reST.

    >>> print(markdown_to_rst("<!-- x -->\nSee `a`:\n\n| k | v |\n|---|---|\n| 1 | **2** |"))
    See ``a``:
    <BLANKLINE>
    .. list-table::
       :header-rows: 1
    <BLANKLINE>
       * - k
         - v
       * - 1
         - **2**
    <BLANKLINE>
    """
    out, table = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out += _md_table(table)
            table = []
        if line.startswith("<!--"):
            continue
        out.append(_md_inline(line))
    if table:
        out += _md_table(table)
    return "\n".join(out).strip("\n") + "\n"


class XbkgMarkdownDirective(Directive):
    """The content of a Markdown file (path relative to the page), as reST."""

    required_arguments = 1
    has_content = False

    def run(self):
        from pathlib import Path

        from docutils.statemachine import StringList
        from sphinx.util.nodes import nested_parse_with_titles

        env = self.state.document.settings.env
        path = Path(env.doc2path(env.docname)).parent / self.arguments[0]
        env.note_dependency(str(path))
        text = markdown_to_rst(path.read_text(encoding="utf-8"))
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(text.splitlines(), str(path)), container)
        return container.children


# ---------------------------------------------------------------------------------------------
# docstring fixes

_BARS = re.compile(r"(?<![\\|\w])\|([^|`\s][^|`]*?)\|(?![|\w])")


def escape_bars(lines: list[str]) -> list[str]:
    r"""Escape ``|x|`` (absolute values) outside inline literals, literal blocks and doctests.

    >>> escape_bars(["|DEC| > 90 deg, ``|det|`` stays", "text::", "", "    |x| literal"])
    ['\\|DEC\\| > 90 deg, ``|det|`` stays', 'text::', '', '    |x| literal']
    """
    out, literal_indent = [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and line.strip() and indent <= literal_indent:
            literal_indent = None
        if literal_indent is not None or line.lstrip().startswith((">>>", "...")):
            out.append(line)
            continue
        parts = line.split("``")
        parts[::2] = [_BARS.sub(r"\\|\1\\|", part) for part in parts[::2]]
        out.append("``".join(parts))
        if line.rstrip().endswith("::"):
            literal_indent = indent
    return out


def _process_docstring(app, what, name, obj, options, lines):
    lines[:] = escape_bars(lines)


def setup(app):
    app.add_directive("xbkg-cli", XbkgCliDirective)
    app.add_directive("xbkg-api", XbkgApiDirective)
    app.add_directive("xbkg-markdown", XbkgMarkdownDirective)
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
