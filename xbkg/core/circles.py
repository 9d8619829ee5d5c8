"""Circles on the sky (exclusion regions): the container every layer passes around."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SkyCircles"]


@dataclass(frozen=True, eq=False)
class SkyCircles:
    """Circles on the sky (ICRS, deg): centres ``ra, dec`` and ``radius``, with ``names``.

    Parameters
    ----------
    ra, dec : array_like
        Centres, deg (ra wrapped into [0, 360)).
    radius : array_like
        Radii, deg, in (0, 90).
    names : sequence of str, optional
        One per circle (default: ``"region 0"``, ``"region 1"``...).

    Examples
    --------
    >>> c = SkyCircles([83.63, 228.5], [22.01, -59.2], [0.3, 0.4], ["Crab", "MSH 15-52"])
    >>> len(c), c.names[1], float(c.radius[0])
    (2, 'MSH 15-52', 0.3)
    """

    ra: np.ndarray
    dec: np.ndarray
    radius: np.ndarray
    names: tuple = ()

    def __post_init__(self):
        values = {}
        for name in ("ra", "dec", "radius"):
            arr = np.atleast_1d(np.asarray(getattr(self, name), dtype=float)).ravel()
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"exclusion regions: {name} must be finite, got {arr.tolist()}")
            values[name] = arr
        if not values["ra"].size == values["dec"].size == values["radius"].size:
            raise ValueError("exclusion regions: ra, dec and radius must have the same length, got "
                             f"{values['ra'].size}, {values['dec'].size}, {values['radius'].size}")
        if np.any(np.abs(values["dec"]) > 90):
            raise ValueError(f"exclusion regions: dec must be within [-90, 90] deg, got "
                             f"{values['dec'].tolist()}")
        if np.any(~(values["radius"] > 0)) or np.any(values["radius"] >= 90):
            raise ValueError(f"exclusion regions: radius must be in (0, 90) deg, got "
                             f"{values['radius'].tolist()}")
        names = tuple(str(n) for n in self.names) if len(self.names) else tuple(
            f"region {i}" for i in range(values["ra"].size))
        if len(names) != values["ra"].size:
            raise ValueError(f"exclusion regions: {len(names)} names for {values['ra'].size} regions")
        values["ra"] = np.mod(values["ra"], 360.0)
        for name, arr in values.items():
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return int(self.ra.size)

    def subset(self, index) -> "SkyCircles":
        """The circles selected by an index array or boolean mask."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, int)
        return SkyCircles(self.ra[index], self.dec[index], self.radius[index],
                          tuple(self.names[i] for i in index))

    def to_dict(self) -> dict:
        """Plain lists ``{"ra", "dec", "radius", "names"}`` (picklable, JSON-serialisable)."""
        return {"ra": self.ra.tolist(), "dec": self.dec.tolist(), "radius": self.radius.tolist(),
                "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict) -> "SkyCircles":
        """Inverse of :meth:`to_dict` (``names`` optional)."""
        try:
            return cls(data["ra"], data["dec"], data["radius"], tuple(data.get("names", ())))
        except KeyError as exc:
            raise ValueError(f"exclusion region dict needs ra, dec and radius: {data!r}") from exc

    @classmethod
    def concatenate(cls, parts) -> "SkyCircles":
        """One :class:`SkyCircles` holding the circles of all ``parts``."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0))
        return cls(np.concatenate([p.ra for p in parts]), np.concatenate([p.dec for p in parts]),
                   np.concatenate([p.radius for p in parts]),
                   tuple(n for p in parts for n in p.names))
