"""The band gap placed from pw.x's eigenvalues, not read from QE's HOMO/LUMO line or ASE's bandgap().

QE's printed levels say neither where the extrema sit nor whether a smeared system is a metal, so the gap
is placed from the (spin, k, band) eigenvalues and the occupations the request implies: the lowest bands
with fixed occupations, the states below the Fermi level with smearing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BandGap:
    """CBM − VBM over all k-points and spins (eV); k-point indices of the extrema, None for a metal."""

    gap: float
    vbm: float | None = None
    cbm: float | None = None
    direct: bool | None = None
    vbm_k: int | None = None
    cbm_k: int | None = None


def band_gap(eigenvalues: np.ndarray, *, n_occupied: Sequence[int] | None = None,
             fermi_level: float | None = None, tolerance: float = 0.0) -> BandGap:
    """The gap from eigenvalues shaped (spin, k, band), not from QE's HOMO/LUMO line or ASE's bandgap().

    Fixed occupations (``n_occupied`` per spin): the lowest bands are filled at every k-point. Smeared
    (``fermi_level``): a state is filled when below the Fermi level, and the system is a metal (gap 0) when
    one band is filled at some k-point and empty at another, or a state lies within ``tolerance`` of it.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim != 3:
        raise ValueError(f"eigenvalues must be shaped (spin, k, band), got {eig.shape}")
    if n_occupied is not None:
        if len(n_occupied) != eig.shape[0]:
            raise ValueError(f"{len(n_occupied)} occupations for {eig.shape[0]} spin channels")
        filled = np.zeros(eig.shape, dtype=bool)
        for spin, n in enumerate(n_occupied):
            filled[spin, :, :n] = True
    elif fermi_level is not None:
        filled = eig < fermi_level
        partial = filled.any(axis=1) & ~filled.all(axis=1)
        if partial.any() or (np.abs(eig - fermi_level) < tolerance).any():
            return BandGap(0.0)
    else:
        raise ValueError("band_gap needs n_occupied (fixed occupations) or fermi_level (smearing)")
    if filled.all() or not filled.any():
        raise ValueError("cannot place a gap: no empty or no filled states (raise nbnd)")
    masked_vb = np.where(filled, eig, -np.inf)
    masked_cb = np.where(filled, np.inf, eig)
    v = np.unravel_index(np.argmax(masked_vb), eig.shape)
    c = np.unravel_index(np.argmin(masked_cb), eig.shape)
    vbm, cbm = float(eig[v]), float(eig[c])
    if cbm <= vbm:
        return BandGap(0.0)
    return BandGap(cbm - vbm, vbm, cbm, bool(v[1] == c[1]), int(v[1]), int(c[1]))
