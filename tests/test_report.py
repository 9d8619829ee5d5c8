"""The HTML report: its sections, self-containment, size on DR1, and how a browser renders it."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import xbkg
from xbkg.cli import main
from xbkg.simulate import simulate_store

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found")

#: Script added to a copy of a page: on load, the page title reports its images and errors.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || 'load error')),
                        true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.title = 'PROBE' + JSON.stringify({n: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    errors: window.__errors});
});
</script>"""


def render(html_path, tmp_path) -> dict:
    """Load a page in headless Chromium: its images (how many, how many decoded), script errors
    and console messages."""
    probe = tmp_path / f"probe-{html_path.name}"
    probe.write_text(html_path.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1),
                     encoding="utf-8")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=20000",
         "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=180)
    title = re.search(r"<title>PROBE(.*?)</title>", proc.stdout)
    assert title, f"page did not load: {proc.stderr[-2000:]}"
    result = json.loads(title.group(1).replace("&quot;", '"'))
    result["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A simulated store and a 3D make-models OUTDIR of it, with its report."""
    root = tmp_path_factory.mktemp("report")
    store = simulate_store(root / "store", n_runs=6, events_per_run=4000, seed=5)
    out = root / "out"
    assert main(["make-models", str(store), str(out), "--zenith-edges", "0,30,60",
                 "--fov-edges", "-2:2:10", "--energy-edges", "0.2:50:8", "--no-progress"]) == 0
    return store, out


@pytest.mark.slow
def test_make_models_writes_a_self_contained_report(built, capsys):
    store, out = built
    text = (out / "report.html").read_text(encoding="utf-8")
    model = xbkg.open_model(out / "model.nc")
    for section in ("Rate over energy x offset", "FoV maps per energy band",
                    "Zenith and condition dependence",
                    "Counts and exposure", "Runs", "Closure against the simulated truth",
                    "Command, options and versions", "Files"):
        assert f"<h2>{section}" in text, section
    assert "crossed bins (x) have exposure but no counts" in text
    assert "xbkg make-models " in text and "--fov-edges -2:2:10" in text
    assert "numpy" in text and xbkg.__version__ in text
    # every run used is listed, and nothing is loaded from elsewhere
    for obs_id in model["obs_id"].values:
        assert f"<td>{int(obs_id)}</td>" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    # rate, one FoV figure per group, zenith, rate vs energy, counts, closure
    assert text.count('src="data:image/png;base64,') == 1 + model.sizes["zenith_group"] + 4
    # rerun from the folder alone
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    assert (out / "report.html").stat().st_size > 20_000
    # make-models drew it from the model in memory: the same page as from model.nc
    assert (out / "report.html").read_text(encoding="utf-8") == text


def _tick_labels(axis):
    """Labels of the ticks of an axis inside its view (matplotlib keeps others, not drawn)."""
    scale = axis.get_transform().transform  # compare in the axis's (log or linear) scale
    lo, hi = sorted(scale(np.asarray(axis.get_view_interval(), dtype=float)))
    tol = 1e-9 * (hi - lo)
    labels = []
    for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks),
                        (axis.get_minorticklocs(), axis.get_minor_ticks)):
        where = scale(np.asarray(locs, dtype=float))
        labels += [tick.label1 for x, tick in zip(where, ticks(len(locs)))
                   if lo - tol <= x <= hi + tol]
    return labels


def _texts(fig):
    """Every text the figure draws: titles, axis and tick labels in view, offsets, legends."""
    texts = [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title]
        for axis in (ax.xaxis, ax.yaxis):
            texts += [axis.label, axis.offsetText] + _tick_labels(axis)
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def test_report_figures_are_drawn_once_and_fit(built):
    """Each report figure is drawn once (no layout engine), with plain-text log labels, and
    every text it draws lies inside the picture without overlapping a text of another axes
    (the margins are fixed, so a label too wide for them would be cut or run into a panel)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from xbkg.report import html as report
    from xbkg.report.figures import figure_context, png_tag

    store, out = built
    model = xbkg.open_model(out / "model.nc")
    obs = xbkg.open_datastore(store)
    with figure_context():
        figs = [report._rate_fig(model), report._fov_fig(model, 0), report._zenith_fig(model, obs),
                report._rate_energy_fig(model), report._counts_fig(model),
                report._closure_fig(model, obs)]
    for k, fig in enumerate(figs):
        draws = []
        fig.canvas.mpl_connect("draw_event", draws.append)
        tag = png_tag(fig, 72, fit_layout=k != 1)  # the FoV maps keep their fixed margins
        assert tag.startswith('<img alt="figure" src="data:image/png;base64,')
        assert len(draws) == 1 and fig.get_layout_engine() is None
        fig.set_dpi(72)  # as saved; labels are placed at each draw, so draw again to measure
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        boxes = []
        for text in _texts(fig):
            assert "$" not in text.get_text(), text  # no mathtext
            box = text.get_window_extent(renderer)
            assert (box.x0 >= -1 and box.y0 >= -1 and box.x1 <= fig.bbox.x1 + 1
                    and box.y1 <= fig.bbox.y1 + 1), (text.get_text(), box, fig.bbox)
            boxes.append((text.axes, text.get_text(), box.padded(-1)))
        for i, (ax_a, a, box_a) in enumerate(boxes):
            for ax_b, b, box_b in boxes[i + 1:]:
                if ax_a is not ax_b:
                    assert not box_a.overlaps(box_b), (a, b)


@pytest.mark.slow
def test_report_statistics_count_the_empty_bins(built):
    _, out = built
    model = xbkg.open_model(out / "model.nc")
    text = (out / "report.html").read_text(encoding="utf-8")
    exposed = model["exposure"].values > 0
    empty = exposed & (model["counts"].values == 0)
    for g in range(model.sizes["zenith_group"]):
        row = (f"<td>{int(model['counts'][g].sum())}</td><td>{model['counts'][g].size}</td>"
               f"<td>{int(exposed[g].sum())}</td><td>{int(empty[g].sum())}</td>")
        assert row in text, row


@pytest.mark.slow
def test_model_bkg_report_from_python(tmp_path):
    """A 2D model grouped by azimuth too: the report shows the groups' AZ_PNT bounds."""
    store = simulate_store(tmp_path / "s", n_runs=4, events_per_run=1500, seed=1)
    model = xbkg.make_model(store, kind="2d", scheduler="synchronous",
                            grouping={"by": {"AZ_PNT": "-90,90,270"}})
    path = model.bkg.report(tmp_path / "r" / "model.html")
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "r" / "model.html"
    assert "2D model (energy x offset)" in text and "FoV maps" not in text
    assert text.count("data:image/png;base64,") == 4  # rate, zenith, rate vs energy, counts
    assert "<th>AZ_PNT</th><th>counts per hour</th>" in text
    for g in model["zenith_group"].values:
        lo, hi = model["AZ_PNT_bounds"].sel(zenith_group=g).values
        assert f"<td>{lo:g} - {hi:g}</td>" in text


@pytest.mark.subprocess
@needs_chromium
def test_report_renders_in_a_browser(built, tmp_path):
    _, out = built
    shown = render(out / "report.html", tmp_path)
    n_figures = (out / "report.html").read_text().count("<img ")
    assert shown["n"] == n_figures >= 5
    assert shown["decoded"] == shown["n"], shown
    assert shown["errors"] == [] and shown["console"] == [], shown


@pytest.mark.subprocess
@needs_chromium
def test_browser_check_sees_a_broken_figure(tmp_path):
    """The check above can fail: a page with a corrupt image and a script error."""
    page = tmp_path / "bad.html"
    page.write_text('<html><head><title>x</title></head><body><img src="data:image/png;base64,'
                    'AAAA"><script>console.error("boom"); undefined_name()</script></body></html>')
    shown = render(page, tmp_path)
    assert shown["n"] == 1 and shown["decoded"] == 0
    assert shown["errors"] and any("boom" in line for line in shown["console"])


@pytest.mark.subprocess
@pytest.mark.slow
def test_dr1_build_report_is_small_and_renders(hess_dr1, tmp_path):
    """make-models on the DR1 off runs, default binning, three zenith groups."""
    out = tmp_path / "dr1"
    assert main(["make-models", str(hess_dr1), str(out), "--zenith-edges", "0,30,45,60",
                 "--no-progress"]) == 0
    report = out / "report.html"
    size = report.stat().st_size
    assert 100_000 < size < 5_000_000, size
    text = report.read_text(encoding="utf-8")
    rejected = xbkg.report.summary.rejected_runs(out)
    assert len(rejected) == 105 - xbkg.open_model(out / "model.nc").sizes["obs_id"]
    assert "not an off run (TARGET_NAME/OBJECT)" in text
    runs_cell = re.search(r"<td>not an off run \(TARGET_NAME/OBJECT\)</td><td>\d+</td><td>([\d ]+)",
                          text).group(1).split()
    assert sorted(int(o) for o in runs_cell) == sorted(
        o for o, reason in rejected.items() if reason == "not an off run (TARGET_NAME/OBJECT)")
    if CHROMIUM:
        shown = render(report, tmp_path)
        assert shown["decoded"] == shown["n"] >= 6 and not shown["errors"], shown
