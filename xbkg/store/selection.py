"""Run selection from the observation table (no event is read).

:func:`select_runs` applies a run list, the kind of run, a zenith range, quality cuts, a
``where`` expression, distance to excluded sources and a maximum number of runs; every rejected
run gets the first reason it failed. ``where`` expressions are parsed by a small parser
(:func:`parse_where`) and never passed to ``eval`` (grammar: docs/user_guide.rst).
"""

from __future__ import annotations

import logging
import re

import numpy as np
import xarray as xr

from xbkg.sky.exclusion import as_circles, edge_distance
from xbkg.store.datastore import takes_store
from xbkg.store.events import fill_from_headers

__all__ = ["SELECTIONS", "select_runs", "SelectionError", "WhereError", "parse_where",
           "evaluate_where", "where_mask", "event_filter_columns", "event_filter_mask"]

log = logging.getLogger(__name__)

SELECTIONS = ("all", "off", "offplane")
_MAX_WHERE_LENGTH = 2000
_MAX_DEPTH = 50


class SelectionError(ValueError):
    """No run survives the selection, or the selection options are invalid."""


class WhereError(SelectionError):
    """A ``where`` expression that cannot be parsed or evaluated."""


# --------------------------------------------------------------------------------------------
# where expressions: tokenizer, parser, evaluator

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|==|!=|=|<|>)
  | (?P<logic>&&|\|\||[&|~!])
  | (?P<paren>[()])
  | (?P<sign>[+-])
""", re.VERBOSE)
_KEYWORDS = {"and": "and", "or": "or", "not": "not", "&": "and", "&&": "and", "|": "or",
             "||": "or", "~": "not", "!": "not"}
_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
            "==": np.equal, "=": np.equal, "!=": np.not_equal}


def _tokens(text: str) -> list[tuple[str, object, int]]:
    """``(kind, value, position)`` tokens; kinds: num, str, col, op, and, or, not, (, ), end."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise WhereError(f"where {text!r}: unexpected character {text[pos]!r} at position {pos}")
        kind, value = m.lastgroup, m.group()
        if kind == "number":
            out.append(("num", float(value), pos))
        elif kind == "string":
            out.append(("str", value[1:-1], pos))
        elif kind == "name":
            low = value.lower()
            out.append((low, low, pos) if low in ("and", "or", "not") else ("col", value, pos))
        elif kind == "op":
            out.append(("op", value, pos))
        elif kind == "logic":
            out.append((_KEYWORDS[value], value, pos))
        elif kind == "paren":
            out.append((value, value, pos))
        elif kind == "sign":
            # a sign belongs to the number after it, where an operand is expected
            nxt = _TOKEN.match(text, m.end())
            if nxt is None or nxt.lastgroup != "number" or (out and out[-1][0] in
                                                           ("num", "str", "col", ")")):
                raise WhereError(f"where {text!r}: unexpected {value!r} at position {pos} "
                                 "(arithmetic is not supported)")
            out.append(("num", float(value + nxt.group()), pos))
            m = nxt
        pos = m.end()
    out.append(("end", None, len(text)))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok=None):
        tok = tok or self.peek()
        shown = "the end" if tok[0] == "end" else repr(str(tok[1]))
        raise WhereError(f"where {self.text!r}: {message}, found {shown} at position {tok[2]}")

    def parse(self):
        tree = self.expr(0)
        if self.peek()[0] != "end":
            self.fail("expected 'and', 'or' or the end of the expression")
        return tree

    def expr(self, depth):
        if depth > _MAX_DEPTH:
            self.fail(f"nesting deeper than {_MAX_DEPTH}")
        return self.chain("or", self.and_expr, depth)

    def and_expr(self, depth):
        return self.chain("and", self.not_expr, depth)

    def chain(self, op, operand, depth):
        """``operand (op operand)*``, grouped from the left."""
        node = operand(depth)
        while self.peek()[0] == op:
            self.take()
            node = (op, node, operand(depth))
        return node

    def not_expr(self, depth):
        kind = self.peek()[0]
        if depth > _MAX_DEPTH:
            self.fail(f"nesting deeper than {_MAX_DEPTH}")
        if kind == "not":
            self.take()
            return ("not", self.not_expr(depth + 1))
        if kind == "(":
            self.take()
            node = self.expr(depth + 1)
            if self.peek()[0] != ")":
                self.fail("expected ')'")
            self.take()
            return node
        return self.compare()

    def operand(self):
        tok = self.peek()
        if tok[0] == "num":
            return ("num", self.take()[1])
        if tok[0] == "str":
            return ("str", self.take()[1])
        if tok[0] == "col":
            return ("col", self.take()[1])
        self.fail("expected a column name, a number or a quoted string")

    def compare(self):
        left = self.operand()
        if self.peek()[0] != "op":
            what = "a column" if left[0] == "col" else "a value"
            self.fail(f"expected a comparison operator (<, <=, >, >=, ==, !=) after {what} "
                      "(calls, attributes and arithmetic are not supported)")
        node = None
        while self.peek()[0] == "op":
            op = self.take()[1]
            right = self.operand()
            if left[0] != "col" and right[0] != "col":
                self.fail("a comparison needs at least one column", self.tokens[self.i - 1])
            cmp = ("cmp", op, left, right)
            node = cmp if node is None else ("and", node, cmp)
            left = right
        return node


def parse_where(text: str):
    """Parse a ``where`` expression into a tree of tuples (see the module docstring).

    Nodes: ``("or", a, b)``, ``("and", a, b)``, ``("not", a)``, ``("cmp", op, left, right)``
    with operands ``("col", name)``, ``("num", float)``, ``("str", text)``.

    >>> parse_where("MUONEFF > 0.7 and not QUALITY != 0")
    ('and', ('cmp', '>', ('col', 'MUONEFF'), ('num', 0.7)), ('not', ('cmp', '!=', ('col', 'QUALITY'), ('num', 0.0))))
    >>> parse_where("__import__('os')")
    Traceback (most recent call last):
    ...
    xbkg.store.selection.WhereError: where "__import__('os')": expected a comparison operator (<, <=, >, >=, ==, !=) after a column (calls, attributes and arithmetic are not supported), found '(' at position 10
    """
    if not isinstance(text, str):
        raise WhereError(f"where must be a string, got {type(text).__name__}")
    if len(text) > _MAX_WHERE_LENGTH:
        raise WhereError(f"where expression longer than {_MAX_WHERE_LENGTH} characters")
    if not text.strip():
        raise WhereError("where expression is empty")
    return _Parser(text).parse()


def _where_columns(tree) -> set[str]:
    if tree[0] == "col":
        return {tree[1]}
    if tree[0] in ("num", "str"):
        return set()
    return set().union(*(_where_columns(t) for t in tree[1:] if isinstance(t, tuple)))


def _resolve(name: str, columns) -> str:
    if name in columns:
        return name
    matches = [c for c in columns if str(c).lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise WhereError(f"where: column {name!r} is ambiguous (matches {sorted(matches)})")
    raise WhereError(f"where: unknown column {name!r}; obs-table columns are: "
                     f"{', '.join(sorted(map(str, columns)))}")


def _operand(node, columns):
    kind, value = node
    if kind == "num":
        return value, "number"
    if kind == "str":
        return value.strip(), "string"
    values = np.asarray(columns[_resolve(value, columns)])
    if values.dtype.kind in "US":
        return np.char.strip(values.astype(str)), "string"
    if values.dtype.kind in "O":
        return np.char.strip(values.astype(str)), "string"
    if values.dtype.kind not in "biuf":
        raise WhereError(f"where: column {value!r} has unsupported type {values.dtype}")
    return values.astype(float), "number"


def evaluate_where(tree, columns) -> np.ndarray:
    """Evaluate a :func:`parse_where` tree on ``columns`` (a mapping name -> 1D array).

    >>> cols = {"MUONEFF": np.array([0.6, 0.8, np.nan]), "TARGET_NAME": np.array(["a", "b", "c"])}
    >>> evaluate_where(parse_where("muoneff > 0.7 or TARGET_NAME == 'a'"), cols).tolist()
    [True, True, False]
    """
    kind = tree[0]
    if kind == "or":
        return evaluate_where(tree[1], columns) | evaluate_where(tree[2], columns)
    if kind == "and":
        return evaluate_where(tree[1], columns) & evaluate_where(tree[2], columns)
    if kind == "not":
        return ~evaluate_where(tree[1], columns)
    if kind != "cmp":
        raise WhereError(f"where: not a parsed expression: {tree!r}")
    _, op, left, right = tree
    (a, ta), (b, tb) = _operand(left, columns), _operand(right, columns)
    if ta != tb:
        raise WhereError(f"where: cannot compare a {ta} with a {tb} "
                         f"({_show(left)} {op} {_show(right)}); quote strings, e.g. 'Off data'")
    with np.errstate(invalid="ignore"):
        return np.asarray(_COMPARE[op](a, b), dtype=bool)


def _show(node) -> str:
    return repr(node[1]) if node[0] == "str" else str(node[1])


@takes_store("store")
def where_mask(store: xr.Dataset, where: str) -> np.ndarray:
    """Boolean mask over ``store.obs_id`` of the runs for which ``where`` is true."""
    tree = parse_where(where)
    names = [str(n) for n in store.data_vars if store[n].dims == ("obs_id",)] + ["obs_id"]
    columns = {n: store[n].values for n in names}
    for name in _where_columns(tree):
        _resolve(name, columns)
    mask = evaluate_where(tree, columns)
    return np.broadcast_to(mask, (store.sizes["obs_id"],)).copy()


def event_filter_columns(expr: str) -> tuple[str, ...]:
    """Event columns an event filter (a ``where`` expression on event columns) reads.

    Parses ``expr`` (raising :class:`WhereError` on bad syntax) so that a build can refuse it
    before reading any run.

    >>> event_filter_columns("MC_ID == 1 and EVENT_TYPE != 3")
    ('EVENT_TYPE', 'MC_ID')
    """
    return tuple(sorted(_where_columns(parse_where(expr))))


def event_filter_mask(expr: str, columns: dict, *, where: str = "events") -> np.ndarray:
    """Boolean mask of the events of one run (``columns``: name -> array) that pass ``expr``.

    >>> event_filter_mask("MC_ID == 1", {"MC_ID": np.array([1, 2, 1])}).tolist()
    [True, False, True]
    """
    tree = parse_where(expr)
    n = len(next(iter(columns.values()))) if columns else 0
    try:
        mask = evaluate_where(tree, columns)
    except WhereError as exc:
        raise WhereError(f"{where}: event filter {expr!r}: {exc}") from None
    return np.broadcast_to(mask, (n,)).copy()


# --------------------------------------------------------------------------------------------
# run selection


def _text(store: xr.Dataset, name: str) -> np.ndarray:
    if name not in store:
        return np.full(store.sizes["obs_id"], "", dtype=str)
    return np.char.lower(store[name].values.astype(str))


def _zenith(store: xr.Dataset, candidates: np.ndarray) -> np.ndarray:
    """Zenith angles (deg), taken from the EVENTS headers of candidate runs the index lacks."""
    zenith = store["zenith"].values.astype(float).copy()
    missing = candidates & ~np.isfinite(zenith)
    if missing.any():
        filled = fill_from_headers(store.isel(obs_id=np.flatnonzero(missing)), keys=("zenith",))
        zenith[missing] = filled["zenith"].values
    return zenith


def _quality_cuts(min_n_tels, min_muoneff, max_quality):
    cuts = []
    if min_n_tels is not None:
        cuts.append(("N_TELS", np.greater_equal, float(min_n_tels), f"N_TELS < {min_n_tels}"))
    if min_muoneff is not None:
        cuts.append(("MUONEFF", np.greater_equal, float(min_muoneff), f"MUONEFF < {min_muoneff}"))
    if max_quality is not None:
        cuts.append(("QUALITY", np.less_equal, float(max_quality), f"QUALITY > {max_quality}"))
    return cuts


@takes_store("store")
def select_runs(store: xr.Dataset, selection: str = "all", *, obs_ids=None, n_obs_max=None,
                glat_min: float = 5.0, zenith_range=None, min_n_tels=None, min_muoneff=None,
                max_quality=None, where: str | None = None, exclude_near=None,
                exclusion_distance: float = 2.5) -> tuple[np.ndarray, dict[int, str]]:
    """OBS_IDs to use and, for every other run of the store, why it was rejected.

    Parameters
    ----------
    store : xarray.Dataset
        Observation Dataset from :func:`xbkg.open_datastore`.
    selection : {"all", "off", "offplane"}
        ``off``: TARGET_NAME or OBJECT says "off" data; ``offplane``: ``|GLAT_PNT| > glat_min``.
    obs_ids : list of int, optional
        Restrict to these runs (a run list); unknown ids raise.
    n_obs_max : int, optional
        Keep at most this many runs (the first ones in OBS_ID order), after all other cuts.
    glat_min : float
        Galactic latitude limit of ``offplane`` (deg).
    zenith_range : (float, float), optional
        Keep runs with ``lo <= zenith <= hi`` (deg). Zenith angles missing from the index are
        read from the EVENTS headers of the candidate runs.
    min_n_tels, min_muoneff, max_quality : float, optional
        Quality cuts ``N_TELS >= min_n_tels``, ``MUONEFF >= min_muoneff``, ``QUALITY <=
        max_quality``, each applied when the obs table has the column (else skipped with a
        warning); a run with a missing value fails the cut.
    where : str, optional
        A safe boolean expression on obs-table columns (module docstring), e.g.
        ``"MUONEFF > 0.7"``.
    exclude_near : xbkg.sky.exclusion.SkyCircles or file, optional
        Excluded sources: reject runs pointed within ``exclusion_distance`` of a region's edge
        (the seed's behaviour; ``make_model(exclusion_mode="runs")``).
    exclusion_distance : float
        Distance (deg) from a region's edge within which a pointing is rejected.

    Returns
    -------
    obs_ids : numpy.ndarray
        Selected OBS_IDs (int64, store order).
    rejected : dict
        ``{obs_id: reason}`` for every other run of the store.

    Raises
    ------
    SelectionError
        Invalid options, or no run left (the message counts the runs each cut rejected).
    """
    if selection not in SELECTIONS:
        raise SelectionError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    all_ids = store.obs_id.values.astype("int64")
    keep = np.ones(all_ids.size, dtype=bool)
    rejected: dict[int, str] = {}

    def reject(mask, reason):
        for obs_id in all_ids[keep & mask]:
            rejected[int(obs_id)] = reason
        keep[mask] = False

    if obs_ids is not None:
        wanted = np.atleast_1d(np.asarray(obs_ids, dtype="int64"))
        unknown = np.setdiff1d(wanted, all_ids)
        if unknown.size:
            raise SelectionError(f"run list has OBS_IDs not in the store: {unknown[:10].tolist()}")
        reject(~np.isin(all_ids, wanted), "not in the run list")
    reject(store["events_file"].values.astype(str) == "", "no events file in the HDU index")
    if selection == "off":
        is_off = np.char.find(_text(store, "TARGET_NAME"), "off") >= 0
        is_off |= np.char.find(_text(store, "OBJECT"), "off") >= 0
        reject(~is_off, "not an off run (TARGET_NAME/OBJECT)")
    elif selection == "offplane":
        if "GLAT_PNT" not in store:
            raise SelectionError("selection 'offplane' needs a GLAT_PNT column in the obs index")
        glat = store["GLAT_PNT"].values.astype(float)
        reject(~(np.abs(glat) > glat_min), f"|GLAT_PNT| <= {glat_min} deg")
    if zenith_range is not None:
        try:
            lo, hi = (float(z) for z in zenith_range)
        except (TypeError, ValueError):
            raise SelectionError(f"zenith_range must be (lo, hi) in deg, got {zenith_range!r}") from None
        if not lo <= hi:
            raise SelectionError(f"zenith_range must have lo <= hi, got {zenith_range!r}")
        zenith = _zenith(store, keep)
        with np.errstate(invalid="ignore"):
            reject(~((zenith >= lo) & (zenith <= hi)), f"zenith outside [{lo:g}, {hi:g}] deg")
    for column, op, limit, reason in _quality_cuts(min_n_tels, min_muoneff, max_quality):
        if column not in store:
            log.warning("obs table has no %s column: cut %s skipped", column, reason)
            continue
        with np.errstate(invalid="ignore"):
            reject(~op(store[column].values.astype(float), limit), reason)
    if where is not None:
        reject(~where_mask(store, where), f"fails where {where!r}")
    if exclude_near is not None:
        _reject_near(store, keep, reject, exclude_near, exclusion_distance)
    if n_obs_max is not None:
        if int(n_obs_max) < 1:
            raise SelectionError(f"n_obs_max must be >= 1, got {n_obs_max}")
        over = np.cumsum(keep) > int(n_obs_max)
        reject(over, f"beyond n_obs_max={int(n_obs_max)}")
    if not keep.any():
        reasons = {}
        for reason in rejected.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        summary = "; ".join(f"{n} x {r}" for r, n in reasons.items())
        raise SelectionError(f"no run selected (selection={selection!r}, {all_ids.size} runs in "
                             f"store; rejected: {summary})")
    log.info("selected %d of %d runs", int(keep.sum()), all_ids.size)
    return all_ids[keep], rejected


def _reject_near(store, keep, reject, regions, distance):
    """Reject runs pointed within ``distance`` (deg) of an excluded region's edge."""

    circles = as_circles(regions)
    distance = float(distance)
    if not distance >= 0:
        raise SelectionError(f"exclusion_distance must be >= 0 deg, got {distance}")
    if not len(circles):
        return
    ra, dec = store["ra_pnt"].values.astype(float), store["dec_pnt"].values.astype(float)
    missing = keep & ~(np.isfinite(ra) & np.isfinite(dec))
    if missing.any():
        filled = fill_from_headers(store.isel(obs_id=np.flatnonzero(missing)),
                                   keys=("ra_pnt", "dec_pnt"))
        ra, dec = ra.copy(), dec.copy()
        ra[missing], dec[missing] = filled["ra_pnt"].values, filled["dec_pnt"].values
    cand = np.flatnonzero(keep)
    edge = edge_distance(ra[cand], dec[cand], circles)
    near = edge.min(axis=1) < distance
    nearest = edge.argmin(axis=1)
    for i, j, d in zip(cand[near], nearest[near], edge[near, nearest[near]]):
        mask = np.zeros(keep.size, dtype=bool)
        mask[i] = True
        where = (f"inside excluded region {circles.names[j]!r}" if d < 0 else
                 f"{d:.2f} deg from the edge of excluded region {circles.names[j]!r} "
                 f"(< {distance:g} deg)")
        reject(mask, f"pointed {where}")
