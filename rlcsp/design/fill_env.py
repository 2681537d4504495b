"""``rlcsp/SkeletonFill-v0``: fill a crystal skeleton one site at a time, in BFS order, to hit a target property.

The MDP of seed papers a-c: the state is the skeleton graph with the sites filled so far (a "blank" type for the
rest), the lattice, space group, the focus site and the target; an action puts one element of the vocabulary on
the focus site; the reward is 0 until the last site and then comes from an evaluator
(:mod:`rlcsp.design.rewards`). The root of the BFS is drawn at each reset (CrystalGym) or fixed.

    import gymnasium as gym, rlcsp.design.fill_env
    env = gym.make("rlcsp/SkeletonFill-v0", skeleton="inputs/structures/y2o3_bixbyite.cif", evaluator="gap-model",
                   evaluator_kwargs={"model": model}, target=1.12)
"""
from __future__ import annotations

import itertools
import sys
from functools import lru_cache
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from ase.data import atomic_numbers
from gymnasium import spaces

from rlcsp.design.chem_rules import common_states, neutral_under_common_states, site_roles, smact_valid, takes_role
from rlcsp.design.neighbourhood import Neighbourhood
from rlcsp.design.rewards import Evaluation, Evaluator, get_evaluator
from rlcsp.exceptions import ConfigError
from rlcsp.design.skeleton import Skeleton, make_skeleton

# Paper b's 21 elements (CrystalGym's "small" vocabulary of 18 plus He, Ne, Kr).
PAPER_B_VOCABULARY = ("Li", "Na", "K", "Rb", "Be", "Ca", "Mg", "Sr", "H", "C", "N", "O", "P", "S", "Se", "F", "Cl",
                      "Br", "He", "Ne", "Kr")
# Paper a's 88 elements (crystal-design's ELEMENTS list), in order of atomic number.
PAPER_A_VOCABULARY = tuple("H He Li Be B C N O F Ne Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
                           "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd "
                           "Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu".split())
OBSERVATIONS = ("graph", "vector")


def fill_masks(types: np.ndarray, allowed: np.ndarray, max_elements: int) -> np.ndarray:
    """Action masks of many partly filled crystals at once: (B, n) node types (blank = ``len(allowed)``, also the
    padding of shorter crystals) -> (B, V) allowed elements, the env's rule for every row (offline data too)."""
    v = len(allowed)
    used = np.zeros((len(types), v + 1), dtype=bool)
    used[np.arange(len(types))[:, None], types] = True
    used = used[:, :v]
    at_limit = used.sum(1) >= max_elements
    mask = allowed[None, :] & (~at_limit[:, None] | used)
    empty = ~mask.any(1)  # the allowed set and the used set do not meet: any used element keeps it valid
    mask[empty] = used[empty]
    return mask


class SkeletonFillEnv(gym.Env):
    """Composition filling on one skeleton. ``action_masks()`` forbids elements (at most ``max_elements``
    distinct ones, and any outside ``allowed``); the evaluator gives -1 to a crystal that breaks the limit anyway.

    With ``chemistry`` (the default) the masks also keep the filling a chemist's. A site takes the role of the
    skeleton's own species (cation or anion, from the likeliest oxidation states of its formula): metals and
    metalloids with a positive common oxidation state on cation sites, non-metals and metalloids with a negative
    one on anion sites, each element in one role (so no noble gas: none is a metal or takes a negative state).
    Every choice leaves the charge balanceable by the remaining sites under common states (``_completable``), and
    the last site takes only elements that make the whole filling charge-neutral under common states and
    SMACT-valid. Where no element passes (rare), the role mask alone applies. ``chemistry=False`` is paper b's
    setting, kept for reproduction.
    """

    metadata = {"render_modes": []}

    def __init__(self, skeleton: Any, evaluator: str | type[Evaluator] | Evaluator = "gap-model",
                 target: float = 1.12, vocabulary: Sequence[str] = PAPER_B_VOCABULARY, root: int | str = "random",
                 max_elements: int = 5, observation: str = "graph", allowed: Sequence[str] | None = None,
                 evaluator_kwargs: dict[str, Any] | None = None, chemistry: bool = True):
        self.skeleton: Skeleton = make_skeleton(skeleton)
        self.vocabulary = tuple(vocabulary)
        unknown = [el for el in self.vocabulary if el not in atomic_numbers or el == "X"]
        if unknown or len(set(self.vocabulary)) != len(self.vocabulary) or not self.vocabulary:
            raise ConfigError(f"the vocabulary must be distinct element symbols; bad: {unknown or self.vocabulary}")
        if observation not in OBSERVATIONS:
            raise ConfigError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if root != "random" and not (isinstance(root, (int, np.integer)) and 0 <= root < self.skeleton.n_sites):
            raise ConfigError(f"root must be 'random' or a site index 0..{self.skeleton.n_sites - 1}, got {root!r}")
        if max_elements < 1:
            raise ConfigError(f"max_elements must be at least 1, got {max_elements}")
        self.evaluator = get_evaluator(evaluator, **{"max_elements": max_elements, **(evaluator_kwargs or {})})
        # a missing pseudopotential raises before any training; one pw.x cannot use leaves the vocabulary
        self.left_out = sorted(self.evaluator.check_vocabulary(self.vocabulary))
        if self.left_out:
            print(f"rlcsp fill: {', '.join(self.left_out)} left out of the vocabulary: pw.x fails on "
                  f"{'its' if len(self.left_out) == 1 else 'their'} pseudopotential (an isolated-atom probe)",
                  file=sys.stderr)
        self.target, self.root, self.max_elements, self.observation = float(target), root, max_elements, observation
        outside = sorted(set(allowed or ()) - set(self.vocabulary))
        if outside:
            raise ConfigError(f"allowed elements {outside} are not in the vocabulary")
        self.allowed = np.array([(allowed is None or el in allowed) and el not in self.left_out
                                 for el in self.vocabulary])
        self.chemistry = chemistry
        if chemistry:
            self.roles = np.array(site_roles(self.skeleton.species))
            self.takes = {sign: np.array([takes_role(el, sign) for el in self.vocabulary]) for sign in (1, -1)}

        n, v, e = self.skeleton.n_sites, len(self.vocabulary), len(self.skeleton.edges)
        self.blank = v
        self.edge_index = self.skeleton.edges[:, :2].T.copy()
        self.edge_distance = self.skeleton.edge_distances().astype(np.float32)
        self.lattice = self.skeleton.cellpar.astype(np.float32)
        self.action_space = spaces.Discrete(v)
        graph = spaces.Dict({
            "node_types": spaces.MultiDiscrete(np.full(n, v + 1)),
            "edge_index": spaces.Box(0, max(n - 1, 0), shape=(2, e), dtype=np.int64),
            "edge_distance": spaces.Box(0.0, np.inf, shape=(e,), dtype=np.float32),
            "lattice": spaces.Box(0.0, np.inf, shape=(6,), dtype=np.float32),
            "spacegroup": spaces.Discrete(231),
            "focus": spaces.Discrete(n + 1),  # n: every site is filled
            "target": spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32),
        })
        size = n * (v + 1) + (n + 1) + 6 + 1 + 1
        self.observation_space = graph if observation == "graph" else spaces.Box(-np.inf, np.inf, shape=(size,),
                                                                                 dtype=np.float32)
        self.episode = 0
        self.order: list[int] = []
        self.types = np.full(n, self.blank, dtype=np.int64)
        self.t = 0

    # -- observations ---------------------------------------------------------------------------------

    @property
    def focus(self) -> int:
        return self.order[self.t] if self.t < self.skeleton.n_sites else self.skeleton.n_sites

    def graph_observation(self) -> dict[str, Any]:
        return {"node_types": self.types.copy(), "edge_index": self.edge_index.copy(),
                "edge_distance": self.edge_distance.copy(), "lattice": self.lattice.copy(),
                "spacegroup": self.skeleton.spacegroup, "focus": self.focus,
                "target": np.array([self.target], dtype=np.float32)}

    def vector_observation(self) -> np.ndarray:
        """One-hot node types and focus, lattice (a, b, c / 10 A; angles / 180), space group / 230, target."""
        n, v = self.skeleton.n_sites, len(self.vocabulary)
        nodes = np.zeros((n, v + 1), dtype=np.float32)
        nodes[np.arange(n), self.types] = 1.0
        focus = np.zeros(n + 1, dtype=np.float32)
        focus[self.focus] = 1.0
        lattice = self.lattice / np.array([10, 10, 10, 180, 180, 180], dtype=np.float32)
        return np.concatenate([nodes.ravel(), focus, lattice, [self.skeleton.spacegroup / 230.0, self.target]]
                              ).astype(np.float32)

    def _observation(self):
        return self.graph_observation() if self.observation == "graph" else self.vector_observation()

    def action_masks(self) -> np.ndarray:
        """Allowed elements for the focus site: the ``allowed`` set, only used ones once the limit is hit, and
        with ``chemistry`` the site's role and a charge the remaining sites can still balance."""
        mask = fill_masks(self.types[None], self.allowed, self.max_elements)[0]
        if not self.chemistry or self.t >= self.skeleton.n_sites:
            return mask
        return self._chemistry_mask(mask)

    def _chemistry_mask(self, mask: np.ndarray) -> np.ndarray:
        sign = int(self.roles[self.focus])
        counts: dict[str, int] = {}
        signs: dict[str, int] = {}
        for site in self.order[:self.t]:
            element = self.vocabulary[self.types[site]]
            counts[element] = counts.get(element, 0) + 1
            signs[element] = int(self.roles[site])
        later = [int(r) for r in self.roles[self.order[self.t + 1:]]]
        role_mask = mask & self.takes[sign] & np.array([signs.get(el, sign) == sign for el in self.vocabulary])
        ok = np.zeros_like(role_mask)
        for action in np.flatnonzero(role_mask):
            element = self.vocabulary[action]
            ok[action] = self._completable({**counts, element: counts.get(element, 0) + 1},
                                           {**signs, element: sign}, later)
        return ok if ok.any() else role_mask if role_mask.any() else mask

    def _candidates(self, counts: dict[str, int], signs: dict[str, int], role: int) -> list[str]:
        """Elements a later site of this role may take: the used ones of that role once the element limit is
        reached, else any allowed element of the role not used in the other."""
        if len(counts) >= self.max_elements:
            return [el for el in counts if signs[el] == role and common_states(el, role)]
        return [el for el, a, t in zip(self.vocabulary, self.allowed, self.takes[role])
                if a and t and signs.get(el, role) == role]

    def _completable(self, counts: dict[str, int], signs: dict[str, int], later: list[int]) -> bool:
        """Whether the remaining sites (their roles in ``later``) can still make the filling charge-neutral under
        common states and SMACT-valid: exactly for the last site; before it, whether some state of each used
        element and some common state on every remaining site (a used element's own, or any candidate's) sum to
        zero, which keeps parity (four Ca²⁺ cannot be balanced by Br⁻, H⁻ and one state of two C)."""
        if not later:
            return neutral_under_common_states(counts, signs) and smact_valid(counts)
        if len(later) == 1:
            role = later[0]
            return any(self._completable({**counts, el: counts.get(el, 0) + 1}, {**signs, el: role}, [])
                       for el in self._candidates(counts, signs, role))
        pools = {role: self._candidates(counts, signs, role) for role in (1, -1) if role in later}
        if any(not pool for pool in pools.values()):
            return False  # sites of a role are left and nothing may fill them
        fresh = {role: {s for el in pool if el not in counts for s in common_states(el, role)}
                 for role, pool in pools.items()}
        for states in itertools.product(*(common_states(el, signs[el]) for el in counts)):
            chosen = dict(zip(counts, states))
            reach = {sum(n * chosen[el] for el, n in counts.items())}
            for role, pool in pools.items():
                values = frozenset(fresh[role] | {chosen[el] for el in pool if el in chosen})
                reach = {a + b for a in reach for b in _sums(later.count(role), values)}
            if 0 in reach:
                return True
        return False

    def valid(self, species: Sequence[str]) -> bool:
        """Whether a complete filling is one the masks let the agent make: vocabulary and ``allowed`` elements, at
        most ``max_elements`` of them, and with ``chemistry`` each site's role, one role per element, charge
        neutrality under common states and SMACT validity (what the last site's mask demands)."""
        index = {el: k for k, el in enumerate(self.vocabulary)}
        if (len(species) != self.skeleton.n_sites or len(set(species)) > self.max_elements
                or any(el not in index or not self.allowed[index[el]] for el in species)):
            return False
        if not self.chemistry:
            return True
        counts: dict[str, int] = {}
        signs: dict[str, int] = {}
        for element, role in zip(species, self.roles.tolist()):
            if not self.takes[role][index[element]] or signs.setdefault(element, role) != role:
                return False
            counts[element] = counts.get(element, 0) + 1
        return self._completable(counts, signs, [])

    def neighbourhood(self, seeds: int = 3, limit: int = 400) -> Neighbourhood:
        """The fillings one move from the labelled ones nearest the target that this env's masks allow."""
        if not self.chemistry:
            roles = [1] * self.skeleton.n_sites
            return Neighbourhood(self.skeleton, roles, {1: [el for el, a in zip(self.vocabulary, self.allowed) if a]},
                                 self.valid, seeds, limit)
        elements = {role: self._candidates({}, {}, role) for role in (1, -1)}  # what an empty filling may take
        return Neighbourhood(self.skeleton, self.roles.tolist(), elements, self.valid, seeds, limit)

    # -- dynamics -------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        root = int(self.np_random.integers(self.skeleton.n_sites)) if self.root == "random" else int(self.root)
        self.order = self.skeleton.bfs_order(root)
        self.types = np.full(self.skeleton.n_sites, self.blank, dtype=np.int64)
        self.t = 0
        return self._observation(), {"order": list(self.order), "action_mask": self.action_masks()}

    def species(self) -> list[str]:
        return [self.vocabulary[t] for t in self.types]

    def step(self, action):
        if self.t >= self.skeleton.n_sites:
            raise ConfigError("step() after the episode ended; call reset()")
        action = int(action)
        if not 0 <= action < len(self.vocabulary):
            raise ConfigError(f"action {action} outside the vocabulary (0..{len(self.vocabulary) - 1})")
        self.types[self.order[self.t]] = action
        self.t += 1
        info: dict[str, Any] = {}
        reward, terminated = 0.0, self.t == self.skeleton.n_sites
        if terminated:
            self.episode += 1
            atoms = self.skeleton.atoms(self.species())
            evaluation: Evaluation = self.evaluator.evaluate(atoms, self.target, self.episode)
            reward = float(evaluation.reward)
            info = {"episode_number": self.episode, "formula": atoms.get_chemical_formula(mode="metal"),
                    "atoms": atoms, "evaluation": evaluation.to_dict()}
        info["action_mask"] = self.action_masks()
        return self._observation(), reward, terminated, False, info

    def random_filling(self, rng: np.random.Generator):
        """The crystal of one episode of uniformly random allowed actions from the state reached, then a reset:
        the random labels and baselines of the benches are drawn so."""
        info: dict[str, Any] = {"action_mask": self.action_masks()}
        terminated = False
        while not terminated:
            _, _, terminated, _, info = self.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        self.reset()
        return info["atoms"]

    # -- exact resume ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Episode counter, RNG and evaluator state between episodes (checkpoints are taken there)."""
        return {"episode": self.episode, "rng": self.np_random.bit_generator.state,
                "evaluator": self.evaluator.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.episode = state["episode"]
        self.np_random.bit_generator.state = state["rng"]
        self.evaluator.load_state(state["evaluator"])


@lru_cache(maxsize=4096)
def _sums(n: int, values: frozenset[int]) -> frozenset[int]:
    """Every total of ``n`` charges drawn (with repeats) from ``values``."""
    out = frozenset({0})
    for _ in range(n):
        out = frozenset(a + v for a in out for v in values)
    return out


gym.register(id="rlcsp/SkeletonFill-v0", entry_point="rlcsp.design.fill_env:SkeletonFillEnv")
