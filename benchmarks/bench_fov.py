"""Speed of xbkg.sky.fov against the per-event astropy route (a script, not a test).

    python benchmarks/bench_fov.py [--sizes 1e6,1e7] [--astropy-events 20000]

Prints events per second (best of a few repeats, wall clock and process CPU time, one core:
numpy runs these kernels single-threaded) for ``offset_deg``, ``radec_to_fov`` and
``radec_to_altaz_fov``, then the astropy route (``SkyCoord.transform_to(AltAz)`` of events and
pointing with per-event times, then gammapy ``sky_to_fov``) and the speed ratio. Events: 90%
within 3 deg of the pointing, 10% within 20 deg (DR1 lists reach far), over a 28-min run.
"""

import argparse
import time

import numpy as np

from xbkg.sky import fov

SITE = dict(geolon=16.5002222222222, geolat=-23.2717777777778, altitude=1835.0)
MJDREF = dict(mjdrefi=51910, mjdreff=0.000742870370370241, timesys="TT")
RA0, DEC0, TSTART, RUN = 83.63, -5.0, 2.82526e8, 1680.0  # 2009-12-14 23:34 UTC, night


def events(n, seed=0):
    rng = np.random.default_rng(seed)
    far = rng.random(n) < 0.1
    half = np.where(far, 20.0, 3.0)
    lon, lat = rng.uniform(-1.0, 1.0, (2, n)) * half
    ra, dec = fov.fov_to_radec(lon, lat, RA0, DEC0)
    return ra, dec, np.sort(rng.uniform(TSTART, TSTART + RUN, n))


def best_rate(func, n, repeats):
    """Events per second, best of ``repeats``: (wall clock, CPU time)."""
    wall = cpu = np.inf
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        func()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return n / wall, n / cpu


def astropy_route(ra, dec, t):
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time, TimeDelta
    from gammapy.utils.coordinates import sky_to_fov

    loc = EarthLocation.from_geodetic(SITE["geolon"] * u.deg, SITE["geolat"] * u.deg,
                                      SITE["altitude"] * u.m)
    obstime = (Time(MJDREF["mjdrefi"], MJDREF["mjdreff"], format="mjd", scale="tt")
               + TimeDelta(t, format="sec"))
    frame = AltAz(obstime=obstime, location=loc, pressure=0 * u.hPa)
    ev = SkyCoord(ra, dec, unit="deg").transform_to(frame)
    pnt = SkyCoord(np.full(ra.size, RA0), np.full(ra.size, DEC0), unit="deg").transform_to(frame)
    return sky_to_fov(ev.az, ev.alt, pnt.az, pnt.alt)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="event counts, comma separated")
    parser.add_argument("--astropy-events", type=float, default=2e4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from astropy.utils import iers

    iers.conf.auto_download = False  # a script: bundled IERS tables, no network
    t0 = time.perf_counter()
    params = fov.altaz_run_params(RA0, DEC0, **SITE, **MJDREF, tstart=TSTART,
                                  tstop=TSTART + RUN)
    t_params = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        fov.altaz_run_params(RA0, DEC0, **SITE, **MJDREF, tstart=TSTART, tstop=TSTART + RUN)
    print(f"altaz_run_params: {1e3 * (time.perf_counter() - t0) / 10:.1f} ms per run "
          f"(first call {1e3 * t_params:.0f} ms)")

    rates = {}
    for n in (int(float(s)) for s in args.sizes.split(",")):
        ra, dec, t = events(n)
        funcs = {
            "offset_deg": lambda: fov.offset_deg(ra, dec, RA0, DEC0),
            "radec_to_fov": lambda: fov.radec_to_fov(ra, dec, RA0, DEC0),
            "radec_to_altaz_fov": lambda: fov.radec_to_altaz_fov(ra, dec, t, params),
        }
        for name, func in funcs.items():
            wall, cpu = best_rate(func, n, args.repeats)
            rates[name] = (wall, cpu)
            print(f"{name:20s} n={n:>10,d}: {wall / 1e6:6.2f} M events/s wall, "
                  f"{cpu / 1e6:6.2f} M events/s CPU")

    n = int(args.astropy_events)
    ra, dec, t = events(n, seed=1)
    wall, cpu = best_rate(lambda: astropy_route(ra, dec, t), n, 1)
    print(f"{'astropy AltAz route':20s} n={n:>10,d}: {wall:8.0f} events/s wall, "
          f"{cpu:8.0f} events/s CPU")
    lon, lat = astropy_route(ra, dec, t)
    mine = fov.radec_to_altaz_fov(ra, dec, t, params)
    err = 3600 * np.hypot((mine[0] - lon.deg) * np.cos(np.radians(lat.deg)), mine[1] - lat.deg)
    near = fov.offset_deg(ra, dec, RA0, DEC0) < 5.0
    mine_wall, mine_cpu = rates["radec_to_altaz_fov"]
    print(f"speed ratio radec_to_altaz_fov / astropy: {mine_wall / wall:,.0f} wall, "
          f"{mine_cpu / cpu:,.0f} CPU")
    print(f"max difference to astropy: {err[near].max():.4f} arcsec within 5 deg, "
          f"{err.max():.4f} arcsec overall")


if __name__ == "__main__":
    main()
