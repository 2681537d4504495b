"""Composition -> property models: Magpie features of a formula and a band-gap regressor on experimental gaps.

Paper d rewards a generated composition with property predictors (Roost networks, random forests) whose
checkpoints were never published (composition.md §3), so rlcsp trains its own: an MLP on matminer's Magpie
composition features, fitted to the 3,896 experimental band gaps in ``shared/data/expt_band_gaps/regression.csv``
(Zhuo, Mansouri Tehrani and Brgoch 2018; every entry has a gap > 0). Its cross-validated MAE is measured with
folds grouped by reduced formula, because 454 formulas appear more than once and would otherwise leak across folds.

Features are matminer's ``Stoichiometry()`` + ``ElementProperty.from_preset("magpie")`` (6 + 132 numbers, same
order), computed here as array operations over a matrix of counts: the composition DQN featurises thousands of
partial formulas per second, which matminer's per-formula ``featurize`` cannot. The element table is matminer's
own ``MagpieData``; a test checks the vectorised features against matminer's featuriser.

Trained models are cached as one torch file per (data file, settings) pair, ``gap-<sha256[:16]>.pt`` holding the
MLP's ``state_dict``, the feature mean and standard deviation, the settings and the cross-validation report, in
``cache_dir`` (default ``$RLCSP_CACHE/composition_models``, else ``${XDG_CACHE_HOME:-~/.cache}/rlcsp/
composition_models``). Loading needs no pickle (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcsp.exceptions import CompositionError, ConfigError, UnknownElement
from rlcsp.design.fill import SHARED

EXPT_GAPS = SHARED / "data" / "expt_band_gaps" / "regression.csv"

MAGPIE_PROPERTIES = ("Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row", "CovalentRadius",
                     "Electronegativity", "NsValence", "NpValence", "NdValence", "NfValence", "NValence",
                     "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa",
                     "GSbandgap", "GSmagmom", "SpaceGroupNumber")
MAGPIE_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
STOICHIOMETRY_P = (0, 2, 3, 5, 7, 10)


def default_cache_dir() -> Path:
    """Where trained composition models are kept unless a caller names a folder (never the working directory)."""
    base = os.environ.get("RLCSP_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "rlcsp"
    return Path(base) / "composition_models"


@lru_cache(maxsize=1)
def _magpie_data():
    from matminer.utils.data import MagpieData

    return MagpieData()


@lru_cache(maxsize=None)
def _magpie_row(symbol: str) -> tuple[float, ...]:
    from pymatgen.core import Element

    return tuple(float(_magpie_data().get_elemental_property(Element(symbol), p)) for p in MAGPIE_PROPERTIES)


class MagpieFeaturizer:
    """matminer's Stoichiometry + Magpie ElementProperty features of many formulas over one element list at once.

    ``featurizer(counts)`` takes a (formulas x elements) array of non-negative amounts (fractional amounts are fine)
    and returns (formulas x 138) features; a formula with no atoms (the empty start of an episode) gets zeros.
    """

    def __init__(self, symbols: Sequence[str]):
        from pymatgen.core import Element

        if not symbols:
            raise CompositionError("empty element list")
        unknown = [s for s in symbols if not Element.is_valid_symbol(s)]
        if unknown:
            raise UnknownElement(f"unknown elements {unknown}")
        self.symbols = tuple(symbols)
        self.table = np.array([_magpie_row(s) for s in self.symbols])  # (elements, properties)

    @staticmethod
    def labels() -> list[str]:
        return [f"{p}-norm" for p in STOICHIOMETRY_P] + [f"MagpieData {stat} {prop}" for prop in MAGPIE_PROPERTIES
                                                           for stat in MAGPIE_STATS]

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=float)
        if counts.ndim != 2 or counts.shape[1] != len(self.symbols):
            raise CompositionError(f"counts must be (formulas, {len(self.symbols)}), got {counts.shape}")
        total = counts.sum(1, keepdims=True)
        empty = total[:, 0] <= 0
        frac = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
        present = frac > 0
        table = self.table[None]  # (1, elements, properties)
        mean = frac @ self.table
        avg_dev = np.einsum("be,bep->bp", frac, np.abs(table - mean[:, None]))
        minimum = np.where(present[..., None], table, np.inf).min(1)
        maximum = np.where(present[..., None], table, -np.inf).max(1)
        is_mode = present & np.isclose(frac, frac.max(1, keepdims=True))
        mode = np.where(is_mode[..., None], table, np.inf).min(1)
        stats = {"minimum": minimum, "maximum": maximum, "range": maximum - minimum, "mean": mean,
                 "avg_dev": avg_dev, "mode": mode}
        magpie = np.stack([stats[s] for s in MAGPIE_STATS], axis=2).reshape(len(counts), -1)  # property-major
        norms = [present.sum(1).astype(float)] + [np.power((frac ** p).sum(1), 1.0 / p) for p in STOICHIOMETRY_P[1:]]
        features = np.concatenate([np.stack(norms, 1), magpie], axis=1)
        features[empty] = 0.0
        return features


def formula_matrix(compositions: Sequence[Mapping[str, float] | str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Amounts of ``compositions`` as one (formulas x elements) matrix over their sorted union of elements."""
    from pymatgen.core import Composition

    dicts = []
    for c in compositions:
        if isinstance(c, str):
            try:
                c = Composition(c).get_el_amt_dict()
            except (ValueError, KeyError) as exc:
                raise CompositionError(f"cannot read formula {c!r}: {exc}") from exc
        dicts.append(dict(c))
    symbols = tuple(sorted({s for d in dicts for s in d}))
    index = {s: i for i, s in enumerate(symbols)}
    matrix = np.zeros((len(dicts), len(symbols)))
    for row, d in enumerate(dicts):
        for symbol, amount in d.items():
            matrix[row, index[symbol]] = amount
    return matrix, symbols


def load_band_gaps(path: str | Path = EXPT_GAPS) -> tuple[list[str], np.ndarray]:
    """Formulas and experimental gaps (eV) of a ``composition,band_gap_eV`` CSV."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"band-gap data not found at {path}; set RLCSP_SHARED to the shared/ folder")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"composition", "band_gap_eV"} <= set(rows[0]):
        raise ConfigError(f"{path}: expected columns composition, band_gap_eV")
    return [r["composition"] for r in rows], np.array([float(r["band_gap_eV"]) for r in rows])


# --------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class GapModelSettings:
    hidden: tuple[int, ...] = (256, 128)
    epochs: int = 150
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    folds: int = 5
    seed: int = 0
    max_samples: int | None = None  # a seeded subset of the data, for quick checks


Z_CLIP = 6.0  # a feature nearly constant in training (e.g. the mode of GSmagmom) gave z ~ 1e6 on one test formula


def standardize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """z-scores clipped to +-Z_CLIP, so a formula unlike any training one cannot drive the MLP to absurd outputs."""
    return torch.as_tensor(np.clip((features - mean) / std, -Z_CLIP, Z_CLIP), dtype=torch.float32)


def _network(n_features: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    sizes = [n_features, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 1))


class CompositionGapModel:
    """Band gap (eV, >= 0) of a composition from its standardised Magpie features through an MLP."""

    def __init__(self, network: nn.Sequential, mean: np.ndarray, std: np.ndarray, settings: GapModelSettings,
                 report: dict[str, Any] | None = None):
        self.network, self.mean, self.std = network.eval(), mean, std
        self.settings, self.report = settings, report or {}
        self._featurizers: dict[tuple[str, ...], MagpieFeaturizer] = {}

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        x = standardize(features, self.mean, self.std)
        with torch.no_grad():
            return self.network(x).squeeze(1).clamp(min=0.0).numpy().astype(float)

    def predict(self, counts: np.ndarray, symbols: Sequence[str]) -> np.ndarray:
        """Gaps of the formulas in a (formulas x elements) count matrix over ``symbols``."""
        key = tuple(symbols)
        if key not in self._featurizers:
            self._featurizers[key] = MagpieFeaturizer(key)
        return self.predict_features(self._featurizers[key](counts))

    def predict_formulas(self, compositions: Sequence[Mapping[str, float] | str]) -> np.ndarray:
        matrix, symbols = formula_matrix(compositions)
        return self.predict(matrix, symbols)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"state_dict": self.network.state_dict(), "mean": torch.as_tensor(self.mean),
                    "std": torch.as_tensor(self.std), "settings": json.dumps(asdict(self.settings)),
                    "report": json.dumps(self.report)}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> CompositionGapModel:
        saved = torch.load(path, weights_only=True)
        raw = json.loads(saved["settings"])
        settings = GapModelSettings(**{**raw, "hidden": tuple(raw["hidden"])})
        network = _network(len(saved["mean"]), settings.hidden)
        network.load_state_dict(saved["state_dict"])
        return cls(network, saved["mean"].numpy(), saved["std"].numpy(), settings, json.loads(saved["report"]))


def _fit(features: np.ndarray, gaps: np.ndarray, settings: GapModelSettings) -> CompositionGapModel:
    """An MLP fitted with Adam on the L1 loss (the metric reported), features standardised on this training set."""
    mean, std = features.mean(0), features.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    x = standardize(features, mean, std)
    y = torch.as_tensor(gaps, dtype=torch.float32)
    rng = np.random.default_rng(settings.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        network = _network(features.shape[1], settings.hidden)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    for _ in range(settings.epochs):
        order = torch.as_tensor(rng.permutation(len(y)))
        for start in range(0, len(y), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            loss = nn.functional.l1_loss(network(x[batch]).squeeze(1), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return CompositionGapModel(network, mean, std, settings)


def _group_folds(groups: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Fold index of each sample; all samples of one group (reduced formula) share a fold."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[i]: k % folds for k, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def _dataset(path: str | Path, settings: GapModelSettings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from pymatgen.core import Composition

    formulas, gaps = load_band_gaps(path)
    if settings.max_samples is not None and settings.max_samples < len(formulas):
        keep = np.sort(np.random.default_rng(settings.seed).permutation(len(formulas))[:settings.max_samples])
        formulas, gaps = [formulas[i] for i in keep], gaps[keep]
    matrix, symbols = formula_matrix(formulas)
    groups = [Composition(f).reduced_formula for f in formulas]
    return MagpieFeaturizer(symbols)(matrix), gaps, groups


def cross_validate(features: np.ndarray, gaps: np.ndarray, groups: Sequence[str],
                   settings: GapModelSettings) -> dict[str, Any]:
    """Grouped k-fold MAE of the model, next to the MAE of always answering the training mean."""
    if settings.folds < 2:
        raise ConfigError(f"folds must be >= 2, got {settings.folds}")
    fold = _group_folds(groups, settings.folds, settings.seed)
    maes, baseline = [], []
    for k in range(settings.folds):
        train, test = fold != k, fold == k
        model = _fit(features[train], gaps[train], settings)
        maes.append(float(np.abs(model.predict_features(features[test]) - gaps[test]).mean()))
        baseline.append(float(np.abs(gaps[train].mean() - gaps[test]).mean()))
    return {"cv_mae": float(np.mean(maes)), "cv_mae_std": float(np.std(maes)), "fold_mae": maes,
            "mean_predictor_mae": float(np.mean(baseline)), "folds": settings.folds, "samples": len(gaps),
            "grouped_by": "reduced formula"}


def train_gap_model(data: str | Path = EXPT_GAPS, settings: GapModelSettings = GapModelSettings(),
                    cache_dir: str | Path | None = None) -> CompositionGapModel:
    """The gap model for ``data`` and ``settings``: loaded from the cache, or cross-validated, fitted and cached.

    ``model.report`` holds the cross-validation report (``cv_mae`` in eV) and the cache file it lives in.
    """
    data = Path(data)
    digest = hashlib.sha256(data.read_bytes() if data.is_file() else b"")
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    path = Path(cache_dir or default_cache_dir()) / f"gap-{digest.hexdigest()[:16]}.pt"
    if path.is_file():
        return CompositionGapModel.load(path)
    features, gaps, groups = _dataset(data, settings)
    report = cross_validate(features, gaps, groups, settings)
    model = _fit(features, gaps, settings)
    model.report = {**report, "data": str(data), "cache_file": str(path)}
    model.save(path)
    return model
