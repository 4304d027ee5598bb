"""Multichannel time series: real tables shipped with statsmodels, and a generator.

Channel-clustered forecasting (:mod:`sklearn_interp.forecasting`) needs
series with several channels. The long-horizon benchmarks of the forecasting
literature (ETT, Weather, Electricity, ...) only download at run time; the
tables below ship inside statsmodels' wheel, and :func:`make_channel_groups`
plants channel groups whose ground truth is known.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

# macrodata's series that are levels (made stationary as 100·Δlog, the
# quarterly growth rate in percent) and those that are already rates (Δ).
_MACRO_LEVELS = ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "pop")
_MACRO_RATES = ("tbilrate", "unemp", "infl", "realint")


@validate_params({"stationary": ["boolean"]}, prefer_skip_nested_validation=True)
def load_macrodata(*, stationary: bool = True) -> pd.DataFrame:
    """US macroeconomic series, 1959Q1–2009Q3 (statsmodels' ``macrodata``).

    Parameters
    ----------
    stationary : bool, default=True
        Turn levels into quarterly growth rates in percent (100·Δlog) and
        rates into their first differences, as a VAR would need; this drops
        the first quarter.

    Returns
    -------
    frame : pandas.DataFrame of shape (202, 12) or (203, 12)
        One column per series, indexed by quarter start.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_macrodata
    >>> load_macrodata().shape
    (202, 12)
    """
    from statsmodels.datasets import macrodata

    raw = macrodata.load_pandas().data
    frame = raw[list(_MACRO_LEVELS + _MACRO_RATES)].astype(np.float64)
    # The table runs without gaps from 1959Q1.
    first = f"{int(raw['year'].iloc[0])}-{3 * int(raw['quarter'].iloc[0]) - 2:02d}-01"
    frame.index = pd.date_range(first, periods=len(frame), freq="QS-JAN")
    if not stationary:
        return frame
    growth = 100.0 * np.log(frame[list(_MACRO_LEVELS)]).diff()
    change = frame[list(_MACRO_RATES)].diff()
    return pd.concat([growth, change], axis=1).iloc[1:]


def load_fertility() -> pd.DataFrame:
    """Fertility rates of the 192 countries with complete records, 1960–2011.

    From statsmodels' ``fertility`` table (World Bank, births per woman);
    countries with a missing year are left out, and 2012–2013 are empty in
    the source. Many similar channels make it a test of forecasting
    channels (countries) never seen in training.

    Returns
    -------
    frame : pandas.DataFrame of shape (52, 192)
        One column per country (ISO code), indexed by year start.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_fertility
    >>> load_fertility().shape
    (52, 192)
    """
    from statsmodels.datasets import fertility

    raw = fertility.load_pandas().data.set_index("Country Code")
    years = [str(year) for year in range(1960, 2012)]
    table = raw[years].dropna(axis=0, how="any").astype(np.float64)
    frame = table.T
    frame.index = pd.date_range("1960-01-01", periods=len(years), freq="YS-JAN")
    frame.columns.name = None
    return frame


@validate_params({"as_channels": ["boolean"]}, prefer_skip_nested_validation=True)
def load_elnino(*, as_channels: bool = False) -> pd.DataFrame:
    """Monthly sea surface temperature of the El Niño region, 1950–2010.

    From statsmodels' ``elnino`` table.

    Parameters
    ----------
    as_channels : bool, default=False
        ``False``: one monthly series of 732 steps. ``True``: the twelve
        calendar months as channels over 61 years.

    Returns
    -------
    frame : pandas.DataFrame of shape (732, 1) or (61, 12)
        Indexed by month start (or year start), in degrees Celsius.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_elnino
    >>> load_elnino().shape, load_elnino(as_channels=True).shape
    ((732, 1), (61, 12))
    """
    from statsmodels.datasets import elnino

    raw = elnino.load_pandas().data
    months = raw.drop(columns="YEAR").astype(np.float64)
    first_year = int(raw["YEAR"].iloc[0])
    if as_channels:
        months.index = pd.date_range(f"{first_year}-01-01", periods=len(months), freq="YS-JAN")
        return months
    values = months.to_numpy().reshape(-1)
    index = pd.date_range(f"{first_year}-01-01", periods=values.size, freq="MS")
    return pd.DataFrame({"sst": values}, index=index)


_DRIVERS = ("ar", "sine", "square", "random_walk")


def _group_driver(kind, n_steps, period, rng):
    """One group's latent driver of unit scale: ``kind`` is one of ``_DRIVERS``."""
    time = np.arange(n_steps)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "random_walk":
        walk = np.cumsum(rng.normal(size=n_steps))
        return (walk - walk.mean()) / walk.std()
    if kind == "square":
        return np.sign(np.sin(2 * np.pi * time / period + phase) + 1e-12)
    if kind == "sine":
        return np.sin(2 * np.pi * time / period + phase)
    # AR(2) with roots 0.9·exp(±2πi/period): a noisy oscillation at that period, on top of the sinusoid.
    phi1, phi2 = 2 * 0.9 * np.cos(2 * np.pi / period), -(0.9**2)
    shocks = rng.normal(size=n_steps + 100)
    ar = np.zeros(n_steps + 100)
    for t in range(2, n_steps + 100):
        ar[t] = phi1 * ar[t - 1] + phi2 * ar[t - 2] + shocks[t]
    ar = ar[100:] / ar[100:].std()
    return np.sin(2 * np.pi * time / period + phase) + 0.5 * ar


def _group_labels(n_channels, n_groups, group_sizes):
    if group_sizes is None:
        if n_groups > n_channels:
            raise ValueError(f"n_groups={n_groups} exceeds n_channels={n_channels}.")
        return np.arange(n_channels) % n_groups
    sizes = np.asarray(group_sizes)
    if sizes.ndim != 1 or sizes.size != n_groups or np.any(sizes < 1) or sizes.sum() != n_channels:
        raise ValueError(
            f"group_sizes={list(group_sizes)} must hold n_groups={n_groups} positive sizes summing to "
            f"n_channels={n_channels}."
        )
    return np.repeat(np.arange(n_groups), sizes)


@validate_params(
    {
        "n_steps": [Interval(Integral, 8, None, closed="left")],
        "n_channels": [Interval(Integral, 1, None, closed="left")],
        "n_groups": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "drivers": [StrOptions({"ar", "mixed"}), list, tuple],
        "group_sizes": ["array-like", None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_channel_groups(
    n_steps: int = 1000,
    n_channels: int = 21,
    n_groups: int = 3,
    *,
    noise: float = 0.3,
    drivers: Literal["ar", "mixed"] | Sequence[str] = "ar",
    group_sizes: ArrayLike | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Channels in planted groups, each group driven by its own latent signal.

    Each channel is ``gain · driver + offset + noise · ε`` with a positive
    gain in [0.5, 2], an offset in [−2, 2] and white noise, so after
    per-channel normalisation the channels of a group look alike and the
    groups differ. It is the ground truth for recovering channel clusters.

    Parameters
    ----------
    n_steps : int, default=1000
    n_channels : int, default=21
    n_groups : int, default=3
        At most ``n_channels``.
    noise : float, default=0.3
        Standard deviation of the per-channel white noise (every driver has
        unit scale).
    drivers : {"ar", "mixed"} or sequence of str, default="ar"
        The kind of each group's driver:

        - ``"ar"``: every group a sinusoid of its own period (7, 12, 19, 30,
          48 steps, then 10 % longer) plus a stationary AR(2) process that
          resonates at that period;
        - ``"mixed"``: the groups cycle through a sine, a square wave and a
          random walk (periods as above);
        - a sequence of ``"ar"``, ``"sine"``, ``"square"`` or
          ``"random_walk"``, one per group.
    group_sizes : array-like of int, default=None
        The number of channels of every group, in group order; ``None`` deals
        the channels to the groups in turn.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    series : ndarray of shape (n_steps, n_channels)
    groups : ndarray of shape (n_channels,)
        The group of every channel.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_channel_groups
    >>> series, groups = make_channel_groups(200, 6, 2, random_state=0)
    >>> series.shape, groups.tolist()
    ((200, 6), [0, 1, 0, 1, 0, 1])
    >>> _, groups = make_channel_groups(200, 5, 2, drivers=["square", "random_walk"], group_sizes=[1, 4])
    >>> groups.tolist()
    [0, 1, 1, 1, 1]
    """
    groups = _group_labels(n_channels, n_groups, group_sizes)
    if isinstance(drivers, str):
        kinds = ["ar"] * n_groups if drivers == "ar" else [("sine", "square", "random_walk")[g % 3] for g in range(n_groups)]
    else:
        kinds = list(drivers)
        unknown = sorted(set(kinds) - set(_DRIVERS))
        if len(kinds) != n_groups or unknown:
            raise ValueError(
                f"drivers must name one of {_DRIVERS} for each of the {n_groups} groups, got {kinds}."
            )
    rng = check_random_state(random_state)
    periods = np.array([7.0, 12.0, 19.0, 30.0, 48.0])
    drivers_ = np.empty((n_steps, n_groups))
    for group, kind in enumerate(kinds):
        period = periods[group % periods.size] * (1.0 + 0.1 * (group // periods.size))
        drivers_[:, group] = _group_driver(kind, n_steps, period, rng)
    gains = rng.uniform(0.5, 2.0, size=n_channels)
    offsets = rng.uniform(-2.0, 2.0, size=n_channels)
    series = drivers_[:, groups] * gains + offsets + noise * rng.normal(size=(n_steps, n_channels))
    return series, groups
