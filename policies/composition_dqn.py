"""Composition DQN with chemistry constraints (seed paper d: Pan, Karpovich, Olivetti), CleanRL style.

MDP (composition.md §3). A formula is built in ``horizon`` (5) steps. The state is the partial composition as a
count vector over the elements plus its matminer Magpie + Stoichiometry features (standardised; zeros while it is
empty), and a one-hot step counter. An action is (element, count 0-9); count 0 skips. The last element is fixed
(O, for oxides) and the last step picks only its count (1-9). Masks forbid an element already used, the fixed
element before the last step, and a skip on the last free step while the formula is still empty, so every episode
ends in a real formula.
The only reward is terminal: -|gap - target| from a band-gap model trained on experimental gaps
(``rlcsp.design.composition_models``), minus ``constraint_penalty`` for failing charge neutrality and again for
failing the Pauling electronegativity test (the oracles of ``rlcsp.design.chem_rules``).

Agent (paper d's ``oxides_driver.py``):
- Q(s, a) is one scalar from four branches (material features, step, element, count), concatenated and mixed
  by an MLP; all actions of a state are scored at once by splitting the mixing layer by branch.
- Targets are discounted Monte-Carlo returns (gamma 0.9), not TD targets. Each iteration plays
  ``episodes_per_iteration`` episodes, adds them to a replay buffer, draws ``train_samples`` points from it and
  runs ``epochs`` full-batch Adam steps on an 80/20 split (the 20 % gives the logged validation loss).
  Paper d ran 500 iterations of 100 points x 100 epochs at lr 1e-2; rlcsp defaults to 300 iterations of 1000
  points x 30 epochs at lr 1e-3, which learns the constraints within a few iterations on one CPU core.
- Exploration: epsilon-greedy with epsilon 0.99 decaying x0.99 per iteration, and the greedy choice drawn
  uniformly from the top ``top_fraction`` (15 %) of the valid actions ranked by Q.
- Constraints: the oracles label every finished formula (1 = charge neutral with a Pauling-consistent assignment);
  the label is given to every (state, action) of its episode, and a constraint network (DCN: the same shape, with a
  sigmoid) learns it. Acting keeps only top-n % actions the DCN scores above ``constraint_threshold``; where
  none is, the best-ranked valid action it accepts, and where none at all, the plain top-n % draw. Paper d
  resamples from the top n % until the DCN accepts (at most 100 tries), which draws from the same set; its driver
  set the threshold to 0, which accepts everything, so rlcsp defaults to 0.5.
- Paper d's warm start: ``warm_start_episodes`` random episodes fill the buffer and fit the feature scaler.

``agent="random"`` is the baseline: uniform over the valid actions. ``Agent.history`` holds one row per iteration
under the stable names of ``METRICS`` (``charts/SPS`` counts episodes per second; the charts are means over the
iteration's episodes).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcsp.design.composition_models import CompositionGapModel, MagpieFeaturizer, standardize
from rlcsp.design.chem_rules import charge_neutral, electronegativity_balanced
from rlcsp.exceptions import ConfigError, UnknownElement

# Every element of the experimental band-gap set except O (the gap model has seen each of them), by atomic number.
DEFAULT_VOCABULARY = (
    "H", "Li", "Be", "B", "C", "N", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc", "Ti", "V", "Cr",
    "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb",
    "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Th",
    "U")

METRICS = ("iteration", "episodes", "charts/epsilon", "charts/episodic_return", "charts/charge_neutral",
           "charts/electronegativity_balanced", "charts/gap", "charts/SPS", "losses/q_loss", "losses/q_valid_loss",
           "losses/dcn_loss", "losses/dcn_valid_loss")


@dataclass
class CompositionDQNConfig:
    seed: int = 0
    agent: str = "dqn"  # or "random"
    vocabulary: tuple[str, ...] = DEFAULT_VOCABULARY
    fixed_element: str | None = "O"  # None: every step picks any unused element
    horizon: int = 5
    max_count: int = 9
    target_gap: float = 3.0  # eV: a wide-gap oxide, which a random formula seldom is
    constraint_penalty: float = 1.0  # per failed oracle; 0 with use_constraints=False is paper d's plain DQN
    use_constraints: bool = True  # the DCN filter in action choice
    constraint_threshold: float = 0.5
    top_fraction: float = 0.15
    gamma: float = 0.9
    iterations: int = 300  # paper d: 500
    episodes_per_iteration: int = 100
    warm_start_episodes: int = 1000
    buffer_size: int = 50_000
    train_samples: int = 1000  # paper d: 100 points x 100 epochs, which learns little in 60 iterations here
    epochs: int = 30
    learning_rate: float = 1e-3  # paper d: 1e-2, with which the constraint network here overfits (valid BCE ~ 0.7)
    start_e: float = 0.99
    e_decay: float = 0.99  # epsilon = start_e * e_decay ** iteration
    hidden: int = 64

    def __post_init__(self):
        from pymatgen.core import Element

        self.vocabulary = tuple(self.vocabulary)
        if self.agent not in ("dqn", "random"):
            raise ConfigError(f"agent must be 'dqn' or 'random', got {self.agent!r}")
        if not self.vocabulary:
            raise ConfigError("empty element vocabulary")
        named = (*self.vocabulary, self.fixed_element)
        unknown = [s for s in named if s is not None and not Element.is_valid_symbol(s)]
        if unknown:
            raise UnknownElement(f"unknown elements {unknown} in the vocabulary or fixed_element")
        if len(set(self.vocabulary)) != len(self.vocabulary) or self.fixed_element in self.vocabulary:
            raise ConfigError("vocabulary elements must be distinct and exclude fixed_element")
        free_steps = self.horizon - (self.fixed_element is not None)
        if free_steps < 1 or len(self.vocabulary) < free_steps:
            raise ConfigError(f"horizon {self.horizon} needs >= 1 free step and at least that many vocabulary "
                              f"elements (got {len(self.vocabulary)})")
        if not 1 <= self.max_count <= 99:
            raise ConfigError(f"max_count must be in 1..99, got {self.max_count}")
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.agent == "dqn" and self.warm_start_episodes < 1:
            raise ConfigError("the DQN needs warm_start_episodes >= 1 (they fit the feature scaler)")


# ------------------------------------------------------------------------------------------ environment


class CompositionEnv:
    """Episodes played in lockstep: a (episodes x elements) count matrix and one step counter for all of them.

    Elements are the vocabulary followed by the fixed element; actions are (element index, count index).
    """

    def __init__(self, config: CompositionDQNConfig):
        from pymatgen.core import Element

        self.config = config
        self.fixed = config.fixed_element
        self.symbols = config.vocabulary + ((self.fixed,) if self.fixed else ())
        self.n_elements, self.n_counts, self.horizon = len(self.symbols), config.max_count + 1, config.horizon
        self.last_free_step = self.horizon - 2 if self.fixed else self.horizon - 1
        self.featurizer = MagpieFeaturizer(self.symbols)
        self._write_order = sorted(range(self.n_elements), key=lambda i: (Element(self.symbols[i]).X, i))

    def reset(self, n: int) -> np.ndarray:
        return np.zeros((n, self.n_elements), dtype=np.int64)

    def action_masks(self, counts: np.ndarray, step: int) -> np.ndarray:
        """(episodes, elements, counts) booleans: which (element, count) actions are allowed now."""
        n = len(counts)
        mask = np.zeros((n, self.n_elements, self.n_counts), dtype=bool)
        if self.fixed and step == self.horizon - 1:
            mask[:, -1, 1:] = True
            return mask
        free = self.n_elements - (1 if self.fixed else 0)
        mask[:, :free, :] = (counts[:, :free] == 0)[:, :, None]
        if step == self.last_free_step:
            empty = counts[:, :free].sum(1) == 0
            mask[empty, :, 0] = False
        return mask

    def step(self, counts: np.ndarray, elements: np.ndarray, amounts: np.ndarray) -> np.ndarray:
        counts = counts.copy()
        counts[np.arange(len(counts)), elements] += amounts
        return counts

    def formula(self, row: np.ndarray) -> str:
        """Cations first (by Pauling electronegativity, as pymatgen writes formulas), counts of 1 left out."""
        return "".join(f"{self.symbols[i]}{row[i] if row[i] > 1 else ''}" for i in self._write_order if row[i] > 0)

    def composition(self, row: np.ndarray) -> dict[str, int]:
        return {self.symbols[i]: int(row[i]) for i in np.flatnonzero(row)}


@dataclass
class Outcome:
    """Finished formulas of a batch and what the reward saw."""

    counts: np.ndarray
    formulas: list[str]
    gaps: np.ndarray
    charge_neutral: np.ndarray
    electronegativity_balanced: np.ndarray
    rewards: np.ndarray


def score(env: CompositionEnv, counts: np.ndarray, gap_model: CompositionGapModel) -> Outcome:
    """Terminal rewards: -|gap - target| - penalty x (failed oracles)."""
    config = env.config
    gaps = gap_model.predict(counts, env.symbols)
    comps = [env.composition(row) for row in counts]
    neutral = np.array([charge_neutral(c) for c in comps])
    balanced = np.array([electronegativity_balanced(c) for c in comps])
    rewards = -np.abs(gaps - config.target_gap) - config.constraint_penalty * ((~neutral).astype(float)
                                                                               + (~balanced).astype(float))
    return Outcome(counts, [env.formula(row) for row in counts], gaps, neutral, balanced, rewards)


# ------------------------------------------------------------------------------------------- networks


class BranchNet(nn.Module):
    """Paper d's Q(s, a): material, step, element and count branches, concatenated, mixed, read out to a scalar.

    ``forward`` scores given actions; ``all_actions`` scores every (element, count) of each state at once by
    applying the mixing layer to each branch separately (a linear map of a concatenation is the sum of the
    maps of its parts), which costs a broadcast sum instead of (elements x counts) forward passes.
    """

    def __init__(self, n_features: int, horizon: int, n_elements: int, n_counts: int, hidden: int = 64):
        super().__init__()
        self.material = nn.Sequential(nn.Linear(n_features, hidden), nn.LeakyReLU())
        self.step = nn.Sequential(nn.Embedding(horizon, hidden), nn.LeakyReLU())
        self.element = nn.Sequential(nn.Embedding(n_elements, hidden), nn.LeakyReLU())
        self.count = nn.Sequential(nn.Embedding(n_counts, hidden), nn.LeakyReLU())
        self.mix = nn.Linear(4 * hidden, hidden)
        self.out = nn.Sequential(nn.LeakyReLU(), nn.Linear(hidden, 1))
        self.hidden, self.n_elements, self.n_counts = hidden, n_elements, n_counts

    def forward(self, material: torch.Tensor, step: torch.Tensor, element: torch.Tensor,
                count: torch.Tensor) -> torch.Tensor:
        parts = [self.material(material), self.step(step), self.element(element), self.count(count)]
        return self.out(self.mix(torch.cat(parts, 1))).squeeze(1)

    def all_actions(self, material: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """(states, elements, counts) scores."""
        w_m, w_s, w_e, w_c = self.mix.weight.split(self.hidden, dim=1)
        state = self.material(material) @ w_m.T + self.step(step) @ w_s.T + self.mix.bias
        elements = self.element(torch.arange(self.n_elements)) @ w_e.T
        counts = self.count(torch.arange(self.n_counts)) @ w_c.T
        mixed = state[:, None, None] + elements[None, :, None] + counts[None, None, :]
        return self.out(mixed).squeeze(-1)


# ---------------------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """(state features, step, action, Monte-Carlo return, constraint label) as fixed-size numpy arrays."""

    def __init__(self, capacity: int, n_features: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data = {"features": np.zeros((capacity, n_features), np.float32), "step": np.zeros(capacity, np.int64),
                     "element": np.zeros(capacity, np.int64), "count": np.zeros(capacity, np.int64),
                     "return": np.zeros(capacity, np.float32), "label": np.zeros(capacity, np.float32)}

    def add(self, **batch: np.ndarray) -> None:
        n = len(batch["step"])
        idx = (self.pos + np.arange(n)) % self.capacity  # a batch larger than the buffer keeps its last rows
        for key, value in batch.items():
            self.data[key][idx] = value
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, torch.Tensor]:
        idx = rng.choice(self.size, size=min(n, self.size), replace=False)
        return {key: torch.as_tensor(value[idx]) for key, value in self.data.items()}


# ---------------------------------------------------------------------------------------- acting


def uniform_choice(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """Index of a uniformly drawn True entry of each row of a (rows, n) boolean array (rows have one)."""
    keys = rng.random(allowed.shape)
    return np.where(allowed, keys, -1.0).argmax(1)


@dataclass
class Agent:
    """A trained (or untrained) composition agent: networks, feature scaler and its environment."""

    config: CompositionDQNConfig
    env: CompositionEnv
    q_network: BranchNet | None = None
    dcn: BranchNet | None = None
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def features(self, counts: np.ndarray) -> np.ndarray:
        """Magpie features of the partial formula and its raw counts (Magpie sees only fractions, so Fe1 and Fe2
        look alike, while charge neutrality after the last step depends on the absolute counts)."""
        return np.concatenate([self.env.featurizer(counts), counts / self.config.max_count], axis=1)

    def choose(self, rng: np.random.Generator, features: np.ndarray, step: int, mask: np.ndarray,
               epsilon: float) -> tuple[np.ndarray, np.ndarray]:
        """(element, count) of each episode: random with probability epsilon, else a top-n % (DCN-accepted) action."""
        n, flat_mask = len(mask), mask.reshape(len(mask), -1)
        chosen = uniform_choice(rng, flat_mask)
        explore = rng.random(n) < epsilon
        if self.q_network is not None and not explore.all():
            x = standardize(features, self.feature_mean, self.feature_std)
            steps = torch.full((n,), step, dtype=torch.long)
            with torch.no_grad():
                q = self.q_network.all_actions(x, steps).reshape(n, -1).numpy()
                accept = (torch.sigmoid(self.dcn.all_actions(x, steps)).reshape(n, -1).numpy()
                          > self.config.constraint_threshold) if self.config.use_constraints else flat_mask
            q = np.where(flat_mask, q, -np.inf)
            rank = np.empty_like(q, dtype=np.int64)
            rank[np.arange(n)[:, None], np.argsort(-q, axis=1, kind="stable")] = np.arange(q.shape[1])
            n_top = np.maximum(1, np.round(self.config.top_fraction * flat_mask.sum(1))).astype(int)
            top = flat_mask & (rank < n_top[:, None])
            eligible = top & accept
            best = np.zeros_like(top)
            best[np.arange(n), np.where(flat_mask & accept, q, -np.inf).argmax(1)] = True
            best &= flat_mask & accept  # all False where the DCN accepts no valid action
            eligible = np.where(eligible.any(1, keepdims=True), eligible,
                                np.where(best.any(1, keepdims=True), best, top))
            greedy = uniform_choice(rng, eligible)
            chosen = np.where(explore, chosen, greedy)
        return chosen // self.env.n_counts, chosen % self.env.n_counts

    def play(self, rng: np.random.Generator, n: int, epsilon: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Final counts of ``n`` episodes and every step's (features, step, element, count)."""
        counts = self.env.reset(n)
        steps: dict[str, list[np.ndarray]] = {"features": [], "step": [], "element": [], "count": []}
        for t in range(self.env.horizon):
            features = self.features(counts)
            elements, amounts = self.choose(rng, features, t, self.env.action_masks(counts, t), epsilon)
            for key, value in (("features", features), ("step", np.full(n, t)), ("element", elements),
                               ("count", amounts)):
                steps[key].append(value)
            counts = self.env.step(counts, elements, amounts)
        return counts, {key: np.concatenate(value) for key, value in steps.items()}

    def generate(self, n: int, seed: int) -> np.ndarray:
        """Count matrix of ``n`` compositions from the final policy (no epsilon); same seed, same list."""
        return self.play(np.random.default_rng(seed), n, epsilon=0.0)[0]


# ------------------------------------------------------------------------------------------ training


def _fit(network: BranchNet, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], target: str,
         loss_fn: Callable, epochs: int, rng: np.random.Generator) -> tuple[float, float]:
    """``epochs`` full-batch Adam steps on 80 % of ``batch``; (last training loss, loss on the other 20 %)."""
    order = torch.as_tensor(rng.permutation(len(batch["step"])))
    cut = max(1, int(round(0.8 * len(order))))
    train, valid = order[:cut], order[cut:]

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        pred = network(batch["x"][idx], batch["step"][idx], batch["element"][idx], batch["count"][idx])
        return loss_fn(pred, batch[target][idx])

    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        loss = loss_on(train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        valid_loss = float(loss_on(valid)) if len(valid) else float("nan")
    return float(loss.detach()), valid_loss


def train(config: CompositionDQNConfig, gap_model: CompositionGapModel,
          progress: Callable[[dict[str, Any]], None] | None = None) -> Agent:
    """Warm start, then ``iterations`` rounds of play, replay and fit; the random agent returns untrained."""
    env = CompositionEnv(config)
    agent = Agent(config, env)
    if config.agent == "random":
        return agent
    rng = np.random.default_rng(config.seed)
    n_features = len(MagpieFeaturizer.labels()) + env.n_elements
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        q_network = BranchNet(n_features, config.horizon, env.n_elements, env.n_counts, config.hidden)
        dcn = BranchNet(n_features, config.horizon, env.n_elements, env.n_counts, config.hidden)
    q_optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate)
    dcn_optimizer = torch.optim.Adam(dcn.parameters(), lr=config.learning_rate)
    buffer = ReplayBuffer(config.buffer_size, n_features)
    discounts = config.gamma ** (config.horizon - 1 - np.arange(config.horizon))

    def remember(n: int, epsilon: float) -> Outcome:
        counts, steps = agent.play(rng, n, epsilon)
        outcome = score(env, counts, gap_model)
        # steps are stored step-major: all episodes' step 0, then step 1, ...
        returns = (discounts[:, None] * outcome.rewards[None, :]).reshape(-1)
        labels = np.tile(outcome.electronegativity_balanced.astype(np.float32), config.horizon)
        buffer.add(**steps, **{"return": returns, "label": labels})
        return outcome

    remember(config.warm_start_episodes, epsilon=1.0)
    warm = buffer.data["features"][:buffer.size]
    agent.feature_mean, std = warm.mean(0), warm.std(0)
    agent.feature_std = np.where(std > 1e-12, std, 1.0)
    agent.q_network, agent.dcn = q_network, dcn

    for iteration in range(config.iterations):
        started = time.perf_counter()
        epsilon = config.start_e * config.e_decay ** iteration
        outcome = remember(config.episodes_per_iteration, epsilon)
        batch = buffer.sample(rng, config.train_samples)
        batch["x"] = standardize(batch["features"].numpy(), agent.feature_mean, agent.feature_std)
        q_loss, q_valid = _fit(q_network, q_optimizer, batch, "return", nn.functional.smooth_l1_loss, config.epochs,
                               rng)
        dcn_loss = dcn_valid = float("nan")  # the plain DQN has no use for the constraint network
        if config.use_constraints:
            dcn_loss, dcn_valid = _fit(dcn, dcn_optimizer, batch, "label",
                                       nn.functional.binary_cross_entropy_with_logits, config.epochs, rng)
        row = {"iteration": iteration + 1, "episodes": config.warm_start_episodes
               + (iteration + 1) * config.episodes_per_iteration, "charts/epsilon": epsilon,
               "charts/episodic_return": float(outcome.rewards.mean()),
               "charts/charge_neutral": float(outcome.charge_neutral.mean()),
               "charts/electronegativity_balanced": float(outcome.electronegativity_balanced.mean()),
               "charts/gap": float(outcome.gaps.mean()),
               "charts/SPS": config.episodes_per_iteration / max(time.perf_counter() - started, 1e-9),
               "losses/q_loss": q_loss, "losses/q_valid_loss": q_valid, "losses/dcn_loss": dcn_loss,
               "losses/dcn_valid_loss": dcn_valid}
        agent.history.append(row)
        if progress is not None:
            progress(row)
    return agent


def generate(agent: Agent, n: int, seed: int, gap_model: CompositionGapModel) -> Outcome:
    """``n`` compositions of an agent (trained, or the random baseline), scored like a training episode."""
    return score(agent.env, agent.generate(n, seed), gap_model)
