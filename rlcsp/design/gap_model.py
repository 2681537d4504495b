"""A band-gap model for rewards: CHGNet's pretrained crystal features with a small MLP head (seed paper b).

The CHGNet backbone stays frozen, so a prediction costs one CHGNet forward pass and fine-tuning on a fresh DFT
label (paper b: 10 Adam steps at lr 1e-3 after every successful DFT call) touches only the head and takes
milliseconds. Features are cached per structure, since a filling run sees the same crystals again and again.
Every version of the head can be written to the store (``gap_models``), with each fine-tuning step
(``finetune_steps``), so any reward a run gave can be traced to the model that gave it.

Pre-training uses perov_5, where 96 % of gaps are 0 eV: ``perov5_split`` draws half gapped crystals and keeps a
fifth of those (and as many metals) out of training, so ``GapModel.report`` gives the MAE on gaps never seen. Two
choices make the head a reward that can teach off perov_5's chemistry (measured on 50 random fillings of
inputs/elpasolite.py, seeds 0-7). The standardised features are clipped to +-3: a feature that barely varies over
perov_5 lies ~200 standard deviations out on an elpasolite and drove the softplus to exactly 0 eV for every
filling. Adam's weight decay is 3e-2: without it the clipped head still answers ~0 eV for most fillings (spread
0.02-0.7 eV). Together the predictions spread with a standard deviation of 1.3-2.4 eV over fillings, and the
held-out MAE on non-zero gaps is 0.52-0.68 eV (answering the mean gap: 1.04-1.32 eV; the head with neither
choice: 0.61-0.67 eV, spread 0). Measured and left out: a classifier (gap > 0) times a size regressor (MAE
0.64 eV against 0.59 eV over six seeds; it only lowers the gap predicted for metals, 0.11 against 0.17 eV), and
Magpie composition features trained on the experimental gaps of shared/data/expt_band_gaps (1.69 eV MAE on
perov_5 gaps, worse than the mean: experiment and perov_5's computed gaps disagree).

A reward model an agent optimises against gets exploited where it is wrong, so ``members`` > 1 makes the model an
ensemble: heads from different seeds, each (but the first) trained on a bootstrap resample, whose spread
(``predict_spread``) says where the model does not know. The hybrid loop sends those fillings to DFT and can
discount their reward (``rewards.HybridEvaluator``); ``report`` says how well the spread is calibrated on the
held-out gaps (the share of errors within two standard deviations).
"""
from __future__ import annotations

import base64
import csv
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from ase import Atoms

from rlcsp.exceptions import ConfigError

csv.field_size_limit(sys.maxsize)

FEATURES = 64  # CHGNet's crystal feature vector
Z_CLIP = 3.0  # a feature with a spread of 1e-4 over perov_5 lies ~200 of them away on an elpasolite filling
WEIGHT_DECAY = 3e-2  # Adam's L2 term; without it the head answers 0 eV, or a few spikes, off perov_5's chemistry


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _key(atoms: Atoms) -> str:
    return json.dumps([atoms.get_chemical_symbols(), np.round(atoms.cell.array, 5).tolist(),
                       np.round(atoms.get_scaled_positions(wrap=True), 5).tolist()])


class CrystalFeatures:
    """CHGNet's pooled crystal feature vector (64 numbers) of each structure, computed once per structure, with
    the energy per atom of the same forward pass (a formation energy for evaluations costs nothing more)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._cache: dict[str, tuple[np.ndarray, float]] = {}

    def __call__(self, structures: Sequence[Atoms], batch_size: int = 32) -> np.ndarray:
        keys = self._compute(structures, batch_size)
        return np.stack([self._cache[k][0] for k in keys])

    def energies(self, structures: Sequence[Atoms], batch_size: int = 32) -> np.ndarray:
        """CHGNet's unrelaxed energy per atom (eV) of each structure."""
        keys = self._compute(structures, batch_size)
        return np.array([self._cache[k][1] for k in keys])

    def _compute(self, structures: Sequence[Atoms], batch_size: int) -> list[str]:
        from pymatgen.io.ase import AseAtomsAdaptor

        from rlcsp.calculators.chgnet import load_model

        keys = [_key(a) for a in structures]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            model = load_model(self.device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = model.predict_structure([AseAtomsAdaptor.get_structure(structures[i]) for i in todo],
                                              task="e", return_crystal_feas=True, batch_size=batch_size)
            out = out if isinstance(out, list) else [out]
            for i, pred in zip(todo, out):
                self._cache[keys[i]] = (np.asarray(pred["crystal_fea"], dtype=np.float32), float(pred["e"]))
        return keys


@dataclass
class GapSample:
    atoms: Atoms
    gap: float
    source: str


def perov5_samples(folder: str | Path, n: int | None = 1000, seed: int = 0,
                   gap_column: str = "ind_gap") -> list[GapSample]:
    """Labelled perov_5 crystals (CDVAE CSVs, ``ind_gap`` in eV): every gapped one first, then metals.

    ``folder`` holds the CSVs (val.csv, test.csv, train.csv), or is one CSV file (a training split only, so an
    evaluation on another split stays held out; ``gap_column="band_gap"`` for MP-20). Only about 4 % of perov_5
    has a gap, so a uniform sample would teach the head to answer 0; ``n`` is split evenly between gapped and
    gapless crystals where it can be.
    """
    return perov5_split(folder, n, seed, 0.0, gap_column)[0]


def perov5_split(folder: str | Path, n: int | None = 1000, seed: int = 0, heldout: float = 0.2,
                 gap_column: str = "ind_gap") -> tuple[list[GapSample], list[GapSample]]:
    """``perov5_samples``'s ``n`` crystals as (training, held-out): a ``heldout`` fraction of the gapped ones and
    as many metals are kept out of training, so the model's error on gaps it never saw can be reported."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from rlcsp.design.skeleton import to_structure

    folder = Path(folder)
    files = [folder] if folder.is_file() else [folder / name for name in ("val.csv", "test.csv", "train.csv")]
    rows = []
    for path in files:
        if path.is_file():
            with open(path, newline="") as handle:
                rows.extend(csv.DictReader(handle))
    if not rows:
        raise ConfigError(f"no perov_5 CSVs (val.csv, test.csv) in {folder}")
    rng = np.random.default_rng(seed)
    gapped = [r for r in rows if float(r[gap_column]) > 0]
    metals = [r for r in rows if float(r[gap_column]) <= 0]
    n = len(rows) if n is None else n
    take_gapped = min(len(gapped), (n + 1) // 2)
    gapped = [gapped[i] for i in rng.permutation(len(gapped))[:take_gapped]]
    metals = [metals[i] for i in rng.permutation(len(metals))[:n - take_gapped]]
    k = min(round(heldout * len(gapped)), len(metals))

    def samples(chosen: list[dict[str, str]]) -> list[GapSample]:
        return [GapSample(AseAtomsAdaptor.get_atoms(to_structure(r, origin=f"perov_5 {r['material_id']}")),
                          float(r[gap_column]), "perov_5") for r in chosen]

    return samples(gapped[k:] + metals[k:]), samples(gapped[:k] + metals[:k])


def dft_samples(store) -> list[GapSample]:
    """Successful, fixed-occupation DFT gaps in a store's DFT cache (``dft_calls``), as training labels."""
    from rlcsp.calculators.espresso import structure_atoms

    samples = []
    for (text,) in store.db.query("SELECT record FROM dft_calls WHERE outcome = 'ok' AND band_gap IS NOT NULL"):
        record = json.loads(text)
        structure = (record.get("inputs") or {}).get("structure")
        if structure is None or record.get("gap_approximate"):
            continue
        samples.append(GapSample(structure_atoms(structure), float(record["band_gap"]), "dft"))
    return samples


class GapModel:
    """Band gap (eV, >= 0) from CHGNet crystal features through an MLP head; ``version`` counts updates and
    ``report`` holds the held-out errors of the last ``fit``."""

    def __init__(self, hidden: Sequence[int] = (128, 64), seed: int = 0, model_id: str = "gap-model",
                 features: CrystalFeatures | None = None, store=None, run_id: int | None = None, members: int = 1):
        import torch
        from torch import nn

        if members < 1:
            raise ConfigError(f"a gap model needs at least one member, got {members}")
        self.model_id, self.store, self.run_id = model_id, store, run_id
        self.features = features or CrystalFeatures()
        self.hidden, self.seed, self.members = tuple(hidden), seed, members
        self.heads: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):  # seeded weights; building a model must not move the caller's RNG
            for member in range(members):
                torch.manual_seed(seed + 1000 * member)
                layers: list[nn.Module] = []
                width = FEATURES
                for h in self.hidden:
                    layers += [nn.Linear(width, h), nn.SiLU()]
                    width = h
                self.heads.append(nn.Sequential(*layers, nn.Linear(width, 1), nn.Softplus()))
        self.mean = np.zeros(FEATURES, dtype=np.float32)
        self.std = np.ones(FEATURES, dtype=np.float32)
        self.version = 0
        self.n_samples = 0
        self.report: dict[str, Any] = {}

    # -- predictions ----------------------------------------------------------------------------------

    def _tensor(self, x: np.ndarray):
        """Standardised features clipped to +-Z_CLIP: a crystal unlike any training one stays in range."""
        import torch

        return torch.as_tensor(np.clip((x - self.mean) / self.std, -Z_CLIP, Z_CLIP), dtype=torch.float32)

    def _members(self, x: np.ndarray) -> np.ndarray:
        """Every member's gaps, shape (members, structures)."""
        import torch

        xt = self._tensor(np.atleast_2d(x))
        with torch.no_grad():
            return np.stack([head(xt).squeeze(-1).numpy().astype(float) for head in self.heads])

    def predict(self, structures: Atoms | Sequence[Atoms]) -> float | np.ndarray:
        """The ensemble's mean gap."""
        return self.predict_spread(structures)[0]

    def predict_spread(self, structures: Atoms | Sequence[Atoms]) -> tuple:
        """(mean, standard deviation over members) of the gap; the deviation is 0 for a single model."""
        single = isinstance(structures, Atoms)
        gaps = self._members(self.features([structures] if single else list(structures)))
        mean, std = gaps.mean(axis=0), gaps.std(axis=0)
        return (float(mean[0]), float(std[0])) if single else (mean, std)

    # -- training -------------------------------------------------------------------------------------

    def fit(self, samples: Sequence[GapSample], epochs: int = 150, lr: float = 1e-3, batch_size: int = 64,
            seed: int | None = None, heldout: Sequence[GapSample] = ()) -> list[float]:
        """Train the head (and feature scaling) on labelled crystals; returns the loss of each epoch.

        ``heldout`` crystals are only predicted: ``report`` gets the MAE on the gapped ones, next to the MAE of
        answering the training set's mean gap, and the mean gap predicted for the metals.
        """
        import torch

        if not samples:
            raise ConfigError("no labelled crystals to train the gap model on")
        x = self.features([s.atoms for s in samples])
        y = torch.tensor([s.gap for s in samples], dtype=torch.float32)
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        xt = self._tensor(x)
        base = self.seed if seed is None else seed
        losses = np.zeros(epochs)
        for member, head in enumerate(self.heads):
            generator = torch.Generator().manual_seed(base + 1000 * member)
            # the first member sees every sample; the others a bootstrap resample, so they disagree off the data
            rows = torch.arange(len(xt)) if member == 0 else torch.randint(len(xt), (len(xt),), generator=generator)
            optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
            for epoch in range(epochs):
                order = rows[torch.randperm(len(rows), generator=generator)]
                total = 0.0
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    loss = torch.nn.functional.mse_loss(head(xt[idx]).squeeze(-1), y[idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(idx)
                losses[epoch] += total / len(order) / self.members
        self.n_samples = len(samples)
        gaps = np.array([s.gap for s in heldout], dtype=float)
        predicted, spread = self.predict_spread([s.atoms for s in heldout]) if len(heldout) else (np.zeros(0),) * 2
        gapped, train_gaps = gaps > 0, y.numpy()[y.numpy() > 0]
        self.report = {
            "train_samples": len(samples), "train_gapped": len(train_gaps),
            "heldout_gapped": int(gapped.sum()), "heldout_metals": int((~gapped).sum()),
            "heldout_gapped_mae": _mean(np.abs(predicted[gapped] - gaps[gapped])),
            "heldout_gapped_mean_predictor_mae": (_mean(np.abs(train_gaps.mean() - gaps[gapped]))
                                                  if len(train_gaps) else None),
            "heldout_metal_mean_gap": _mean(predicted[~gapped])}
        if self.members > 1:  # calibration: a Gaussian spread holds 95 % of the errors within two deviations
            self.report.update(heldout_mean_spread=_mean(spread),
                               heldout_within_2_spread=_mean(np.abs(predicted - gaps) <= 2 * spread))
        self._new_version("fit")
        return [float(v) for v in losses]

    def finetune(self, atoms: Atoms, label: float, steps: int = 10, lr: float = 1e-3,
                 episode: int | None = None) -> tuple[list[float], list[float]]:
        """``steps`` Adam steps of every member on one labelled crystal (paper b's online update); (losses,
        predictions) of the ensemble mean before each step."""
        import torch

        x = self._tensor(self.features([atoms]))
        y = torch.tensor([label], dtype=torch.float32)
        params = [p for head in self.heads for p in head.parameters()]
        optimizer = torch.optim.Adam(params, lr=lr)  # per-parameter steps: the same as one optimiser per member
        losses, predictions = [], []
        for _ in range(steps):
            each = torch.cat([head(x).squeeze(-1) for head in self.heads])
            loss = torch.nn.functional.mse_loss(each, y.expand_as(each), reduction="sum")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(((each.mean() - y[0]) ** 2).item()))
            predictions.append(float(each.mean().item()))
        self.n_samples += 1
        self._new_version("finetune", episode)
        if self.store is not None:
            self.store.log_finetune(self.model_id, self.version, self.run_id, episode, losses, predictions, label)
        return losses, predictions

    def _new_version(self, reason: str, episode: int | None = None) -> None:
        self.version += 1
        if self.store is not None:
            self.store.add_gap_model(self.model_id, self.version, reason, self.n_samples, self.state(),
                                     run_id=self.run_id, episode=episode)

    # -- persistence ----------------------------------------------------------------------------------

    def state(self) -> str:
        """The head, feature scaling, version and report as one base64 text (what ``gap_models.state`` holds)."""
        arrays = {f"{_prefix(m)}{k}": v.detach().numpy() for m, head in enumerate(self.heads)
                  for k, v in head.state_dict().items()}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, mean=self.mean, std=self.std, **arrays,
                            meta=np.array(json.dumps({"hidden": self.hidden, "members": self.members,
                                                      "version": self.version,
                                                      "n_samples": self.n_samples, "model_id": self.model_id,
                                                      "report": self.report})))
        return base64.b64encode(buffer.getvalue()).decode()

    def load_state(self, state: str) -> GapModel:
        import torch

        data = np.load(io.BytesIO(base64.b64decode(state)))
        meta = json.loads(str(data["meta"]))
        if tuple(meta["hidden"]) != self.hidden or meta.get("members", 1) != self.members:
            raise ConfigError(f"gap model state has hidden sizes {meta['hidden']} and {meta.get('members', 1)} "
                              f"members, this model {list(self.hidden)} and {self.members}")
        for m, head in enumerate(self.heads):
            prefix = _prefix(m)
            head.load_state_dict({k[len(prefix):]: torch.from_numpy(data[k].copy()) for k in data.files
                                  if k.startswith(prefix)})
        self.mean, self.std = data["mean"], data["std"]
        self.version, self.n_samples = meta["version"], meta["n_samples"]
        self.report = meta.get("report", {})  # states saved before held-out reports have none
        return self

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.state())

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> GapModel:
        text = Path(path).read_text()
        meta = json.loads(str(np.load(io.BytesIO(base64.b64decode(text)))["meta"]))
        return cls(hidden=meta["hidden"], model_id=meta["model_id"], members=meta.get("members", 1),
                   **kwargs).load_state(text)


def _prefix(member: int) -> str:
    """Array-name prefix of a member's weights in a saved state: ``head.`` for the first (states saved before
    ensembles hold that one only), ``head1.``, ``head2.`` ... for the others."""
    return "head." if member == 0 else f"head{member}."


def train_gap_model(perov5: str | Path | None, store=None, n_perov5: int = 1000, epochs: int = 150,
                    seed: int = 0, extra: Iterable[GapSample] = (), heldout: float = 0.2, **kwargs) -> GapModel:
    """A gap model trained on perov_5 gaps plus every cached DFT gap in ``store`` (paper b's pre-training).

    ``heldout`` of the ``n_perov5`` crystals' gapped ones (and as many metals) stay out of training; the model's
    ``report`` says how well it predicts them.
    """
    samples, test = list(extra), []
    if perov5 is not None:
        train, test = perov5_split(perov5, n_perov5, seed, heldout)
        samples += train
    if store is not None:
        samples += dft_samples(store)
    model = GapModel(seed=seed, store=store, **kwargs)
    model.fit(samples, epochs=epochs, heldout=test)
    return model
