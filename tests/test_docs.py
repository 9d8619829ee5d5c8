"""The Sphinx site builds warning-free (as CI does) and holds the generated references."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["index", "getting_started", "user_guide", "instruments", "plots", "formats",
         "conditional", "pitfalls", "cli", "api"]
FIGURES = ["peek_2d.png", "peek_3d.png", "fov_maps.png", "rate_vs_energy.png",
           "zenith_dependence.png", "report_screenshot.png"]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
         str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-5000:]
    return out


def _text(html_dir: Path, page: str) -> str:
    import html as html_lib
    import re

    raw = (html_dir / f"{page}.html").read_text(encoding="utf-8")
    return html_lib.unescape(re.sub(r"<[^>]+>", "", raw))


def test_every_page_is_built(html):
    for page in PAGES:
        assert (html / f"{page}.html").stat().st_size > 1000, page


def test_cli_reference_has_every_subcommand(html):
    from xbkg.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    text = _text(html, "cli")
    assert "usage: xbkg" in text
    for name, subparser in sub.choices.items():
        assert f"usage: xbkg {name}" in text, name
        for action in subparser._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)


def test_api_reference_covers_public_api(html):
    import xbkg
    from xbkg.plots import model as plotting

    text = _text(html, "api")
    for name in xbkg.__all__:
        if name != "__version__":
            assert f"xbkg.{name}(" in text, name
    for name in plotting.__all__:
        assert f"xbkg.plots.model.{name}(" in text, name
    # a re-exported function is documented once, under the top-level package
    assert "xbkg.building.make.make_model(" not in text


def test_figures_are_small_and_used(html):
    for name in FIGURES:
        source = DOCS / "_static" / name
        assert source.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert source.stat().st_size < 200_000, name
        assert (html / "_images" / name).exists(), f"{name} is not shown on any page"


def test_pitfalls_page_has_the_dr1_recipe(html):
    text = _text(html, "pitfalls")
    assert "REVERSE_LON_RADEC" in text and "respect_fov_alignment(obs)" in text
    assert "FOVALIGN" in text and "pickle" in text


def test_instruments_page_has_every_instrument_and_style(html):
    from xbkg.simulate import STYLES

    text = _text(html, "instruments")
    for section in ("H.E.S.S.", "MAGIC", "VERITAS", "LST-1", "CTA (1DC)",
                    "Options for stores without off runs, simulated events and odd layouts"):
        assert section in text, section
    assert "xbkg simulate OUTDIR --style STYLE" in text
    for style in STYLES:
        assert style in text, style
    for flag in ("--fov-extent", "--energy-threshold safe", "--event-filter EXPR",
                 "--exclude-targets RADIUS", "--exclusion-catalog FILE", "--index-dir DIR",
                 "--altitude-tolerance DEG", "--site LON,LAT,HEIGHT"):
        assert flag in text, flag
    # what to pass for each instrument
    for command in ("--selection all --exclude-targets 0.3", '--event-filter "MC_ID == 1"',
                    "--index-dir index/gps", "--fov-alignment radec"):
        assert command in text, command
    assert "being added in parallel" not in text


def test_instrument_options_are_described_once(html):
    """The instrument options live on the instruments page; the user guide links to them."""
    guide = _text(html, "user_guide")
    for measured in ("15,337", "+16.9", "GEOLON 79.4041"):
        assert measured in _text(html, "instruments"), measured
        assert measured not in guide, measured


def test_escape_bars():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from xbkg_docs import escape_bars
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    lines = ["|DEC| > 90 deg and ``|det|``", ">>> abs(-1)  # |x|", "Example::", "",
             "    |x| = 1", "after |y|"]
    assert escape_bars(lines) == [r"\|DEC\| > 90 deg and ``|det|``", ">>> abs(-1)  # |x|",
                                  "Example::", "", "    |x| = 1", r"after \|y\|"]
