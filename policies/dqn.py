"""Online DQN for composition filling (seed paper b), CleanRL style: read it top to bottom.

Q-network: a MEGNet-style graph network (edge, node and global updates in torch-geometric ``MetaLayer`` blocks)
with ``Set2Set`` readouts of nodes and edges, the focus site's embedding and the global state feeding one MLP that
gives a Q-value per element. Replay 200,000, batch 64, gamma 0.99, hard target update every 1000 steps,
epsilon from 1.0 (0.2 from a pretrained network) to 0.001 with exponential decay 1e-5 per step: paper b's
settings. Actions are masked (``env.action_masks()``) in exploration, greedy choice and TD targets.

Metric names are stable (CleanRL's): ``charts/episodic_return``, ``charts/epsilon``, ``charts/SPS``,
``losses/td_loss``, ``losses/q_values``, plus per-episode ``gap``, ``gap_source``, ``model_gap``, ``dft_gap``,
``formula``. They go to ``metrics.csv`` (one row per episode) and to the store (``episodes`` and ``metrics``).
A checkpoint holds networks, optimiser, replay buffer, every RNG and the environment's state, so a resumed run
continues exactly as if it had not stopped. ``agent="random"`` is the random-policy baseline on the same loop.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MetaLayer, Set2Set
from torch_geometric.utils import scatter

from rlcsp.policies.training_log import MetricsLog, load_checkpoint, save_checkpoint
from rlcsp.exceptions import ConfigError
from rlcsp.design.skeleton import Skeleton

METRICS = ("episode", "global_step", "charts/episodic_return", "charts/epsilon", "charts/SPS", "losses/td_loss",
           "losses/q_values", "gap", "gap_source", "model_gap", "dft_gap", "dft_outcome", "formula")


@dataclass
class DQNConfig:
    seed: int = 1
    agent: str = "dqn"  # or "random": the baseline, same loop, no learning
    learning_rate: float = 5e-4
    buffer_size: int = 200_000
    batch_size: int = 64
    gamma: float = 0.99
    target_network_frequency: int = 1000
    start_e: float = 1.0
    start_e_pretrained: float = 0.2
    end_e: float = 0.001
    exploration_decay: float = 1e-5  # epsilon = end + (start - end) * exp(-decay * step)
    learning_starts: int = 1000
    train_frequency: int = 1
    hidden: int = 64
    blocks: int = 3
    gaussians: int = 16
    checkpoint_every: int = 50  # episodes
    log_every: int = 100  # steps between rows of the store's metrics table

    def __post_init__(self):
        if self.agent not in ("dqn", "random"):
            raise ConfigError(f"agent must be 'dqn' or 'random', got {self.agent!r}")


# ------------------------------------------------------------------------------------------- Q-network


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.SiLU()]
    return nn.Sequential(*layers)


class EdgeModel(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.net = mlp([4 * h, h, h])

    def forward(self, src, dst, edge_attr, u, edge_batch):
        return edge_attr + self.net(torch.cat([src, dst, edge_attr, u[edge_batch]], dim=1))


class NodeModel(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.net = mlp([3 * h, h, h])

    def forward(self, x, edge_index, edge_attr, u, batch):
        incoming = scatter(edge_attr, edge_index[1], dim=0, dim_size=x.size(0), reduce="mean")
        return x + self.net(torch.cat([x, incoming, u[batch]], dim=1))


class GlobalModel(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.net = mlp([3 * h, h, h])

    def forward(self, x, edge_index, edge_attr, u, batch):
        nodes = scatter(x, batch, dim=0, dim_size=u.size(0), reduce="mean")
        edges = scatter(edge_attr, batch[edge_index[0]], dim=0, dim_size=u.size(0), reduce="mean")
        return u + self.net(torch.cat([u, nodes, edges], dim=1))


class QNetwork(nn.Module):
    """MEGNet-style blocks over the skeleton graph -> Q-value of each element for the focus site."""

    def __init__(self, n_types: int, n_actions: int, global_dim: int, hidden: int = 64, blocks: int = 3,
                 gaussians: int = 16):
        super().__init__()
        self.node_embedding = nn.Embedding(n_types, hidden)
        self.focus_embedding = nn.Embedding(2, hidden)
        self.edge_in = mlp([gaussians, hidden])
        self.global_in = mlp([global_dim, hidden])
        self.blocks = nn.ModuleList(MetaLayer(EdgeModel(hidden), NodeModel(hidden), GlobalModel(hidden))
                                    for _ in range(blocks))
        self.node_readout = Set2Set(hidden, processing_steps=3)
        self.edge_readout = Set2Set(hidden, processing_steps=3)
        self.head = nn.Sequential(mlp([6 * hidden, 2 * hidden, hidden]), nn.Linear(hidden, n_actions))

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.node_embedding(graph["node_types"]) + self.focus_embedding(graph["is_focus"])
        e, u = self.edge_in(graph["edge_features"]), self.global_in(graph["globals"])
        edge_index, batch = graph["edge_index"], graph["batch"]
        for block in self.blocks:
            x, e, u = block(x, edge_index, e, u, batch)
        focus = x[graph["focus_index"].clamp(max=x.size(0) - 1)]  # a finished graph's focus is never used
        readout = torch.cat([self.node_readout(x, batch), self.edge_readout(e, batch[edge_index[0]]), u, focus], 1)
        return self.head(readout)


class GraphBatcher:
    """Batches states of one or many skeletons (one for the online env, thousands for offline data).

    Each skeleton's static graph (edges, distance features, lattice, space group) is stored once; a state is its
    skeleton's index ``graph``, its node types padded with the blank type to a common width, its focus site (the
    site count once filled) and its target.
    """

    def __init__(self, skeletons: Sequence[Skeleton], blank: int, gaussians: int = 16, cutoff: float = 6.0):
        self.blank = blank
        self.n_sites = torch.tensor([s.n_sites for s in skeletons], dtype=torch.long)
        counts = torch.tensor([len(s.edges) for s in skeletons], dtype=torch.long)
        self.edge_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.edges = torch.as_tensor(np.concatenate([s.edges[:, :2] for s in skeletons]), dtype=torch.long)
        centres = torch.linspace(0.0, cutoff, gaussians)
        distance = torch.as_tensor(np.concatenate([s.edge_distances() for s in skeletons]).astype(np.float32))
        self.edge_features = torch.exp(-((distance[:, None] - centres) ** 2) / 0.5 ** 2)
        cellpar = torch.as_tensor(np.stack([s.cellpar for s in skeletons]).astype(np.float32))
        spacegroup = torch.tensor([[s.spacegroup / 230.0] for s in skeletons], dtype=torch.float32)
        self.static_globals = torch.cat([cellpar / torch.tensor([10, 10, 10, 180, 180, 180.0]), spacegroup], 1)
        self.global_dim = self.static_globals.shape[1] + 2  # + target + filled fraction

    @classmethod
    def for_env(cls, env, gaussians: int = 16) -> GraphBatcher:
        return cls([env.skeleton], env.blank, gaussians)

    def __call__(self, node_types: np.ndarray, focus: np.ndarray, target: np.ndarray,
                 graph: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        b, width = node_types.shape
        graph_t = torch.zeros(b, dtype=torch.long) if graph is None else torch.as_tensor(graph, dtype=torch.long)
        n = self.n_sites[graph_t]
        node_offsets = n.cumsum(0) - n
        padded = torch.as_tensor(node_types, dtype=torch.long)
        real = torch.arange(width)[None, :] < n[:, None]
        types = padded[real]
        focus_t = torch.as_tensor(focus, dtype=torch.long)
        is_focus = torch.zeros(len(types), dtype=torch.long)
        inside = focus_t < n
        is_focus[(node_offsets + focus_t)[inside]] = 1
        n_edges = self.edge_ptr[graph_t + 1] - self.edge_ptr[graph_t]
        first = torch.repeat_interleave(self.edge_ptr[graph_t] - (n_edges.cumsum(0) - n_edges), n_edges)
        rows = first + torch.arange(len(first))
        edge_index = (self.edges[rows] + torch.repeat_interleave(node_offsets, n_edges)[:, None]).T
        filled = ((padded != self.blank) & real).sum(1, keepdim=True) / n[:, None]
        globals_ = torch.cat([self.static_globals[graph_t], torch.as_tensor(target, dtype=torch.float32)[:, None],
                              filled.float()], dim=1)
        return {"node_types": types, "is_focus": is_focus, "edge_index": edge_index,
                "edge_features": self.edge_features[rows], "globals": globals_,
                "batch": torch.repeat_interleave(torch.arange(b), n), "focus_index": node_offsets + focus_t}


# -------------------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Transitions of one skeleton as fixed-size numpy arrays (node types, focus, target; masks of s')."""

    def __init__(self, capacity: int, n_sites: int, n_actions: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data = {"types": np.zeros((capacity, n_sites), np.int16), "focus": np.zeros(capacity, np.int32),
                     "target": np.zeros(capacity, np.float32), "action": np.zeros(capacity, np.int64),
                     "reward": np.zeros(capacity, np.float32), "next_types": np.zeros((capacity, n_sites), np.int16),
                     "next_focus": np.zeros(capacity, np.int32), "done": np.zeros(capacity, np.float32),
                     "next_mask": np.zeros((capacity, n_actions), bool)}

    def add(self, **transition) -> None:
        for key, value in transition.items():
            self.data[key][self.pos] = value
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {key: value[idx] for key, value in self.data.items()}

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> ReplayBuffer:
        """A full buffer over fixed transitions (offline data), sampled like the online one."""
        buffer = cls.__new__(cls)
        buffer.data = data
        buffer.capacity = buffer.size = len(data["action"])
        buffer.pos = 0
        return buffer

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "pos": self.pos, "data": {k: v[:self.size].copy() for k, v in self.data.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.size, self.pos = state["size"], state["pos"]
        for key, value in state["data"].items():
            self.data[key][:len(value)] = value


def epsilon(config: DQNConfig, start: float, step: int) -> float:
    return config.end_e + (start - config.end_e) * math.exp(-config.exploration_decay * step)


def make_q_network(n_actions: int, config, batcher: GraphBatcher) -> QNetwork:
    """The Q-network of a vocabulary of ``n_actions`` elements (+ blank) under a config's hidden/blocks/gaussians."""
    return QNetwork(n_actions + 1, n_actions, batcher.global_dim, config.hidden, config.blocks, config.gaussians)


def on_device(graph: dict[str, torch.Tensor], network: nn.Module) -> dict[str, torch.Tensor]:
    """A batch (built on the CPU by GraphBatcher) where the network's weights are: a GPU trains the network,
    batching stays on the host."""
    device = next(network.parameters()).device
    return {name: tensor.to(device, non_blocking=True) for name, tensor in graph.items()}


def greedy_actions(q_network: QNetwork, batcher: GraphBatcher, node_types: np.ndarray, focus: np.ndarray,
                   target: np.ndarray, mask: np.ndarray, graph: np.ndarray | None = None) -> np.ndarray:
    """Masked argmax of the network's outputs for a batch of states."""
    with torch.no_grad():
        q = q_network(on_device(batcher(node_types, focus, target, graph), q_network)).cpu()
    return torch.where(torch.as_tensor(mask), q, -torch.inf).argmax(1).numpy()


def greedy_action(q_network: QNetwork, batcher: GraphBatcher, obs: dict[str, Any], mask: np.ndarray) -> int:
    return int(greedy_actions(q_network, batcher, obs["node_types"][None], np.array([obs["focus"]]), obs["target"],
                              mask[None])[0])


def td_targets(target_network: QNetwork, batcher: GraphBatcher, data: dict[str, np.ndarray],
               gamma: float) -> torch.Tensor:
    """r + gamma (1 - done) max over allowed a' of Q_target(s', a'): the TD target of DQN and CQL alike."""
    with torch.no_grad():
        next_q = target_network(on_device(batcher(data["next_types"], data["next_focus"], data["target"],
                                                  data.get("graph")), target_network))
        device = next_q.device
        next_q = torch.where(torch.as_tensor(data["next_mask"], device=device), next_q, -torch.inf).max(1).values
        done = torch.as_tensor(data["done"], device=device)
        reward = torch.as_tensor(data["reward"], device=device)
        return reward + gamma * torch.nan_to_num(next_q, neginf=0.0) * (1 - done)


# ------------------------------------------------------------------------------------------ training


def train(env, config: DQNConfig, episodes: int, out: str | Path, store=None, run_id: int | None = None,
          pretrained: str | Path | None = None, on_episode: Callable[[dict[str, Any]], None] | None = None
          ) -> dict[str, Any]:
    """Run (or resume from ``out/checkpoint.pt``) until ``episodes`` episodes are done; returns a summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    batcher = GraphBatcher.for_env(env, config.gaussians)
    n_actions = env.action_space.n
    q_network = make_q_network(n_actions, config, batcher)
    start_e = config.start_e
    if pretrained is not None:
        q_network.load_state_dict(torch.load(pretrained, weights_only=False, map_location="cpu")["q_network"])
        start_e = config.start_e_pretrained
    target_network = copy.deepcopy(q_network)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate)
    buffer = ReplayBuffer(config.buffer_size, env.skeleton.n_sites, n_actions)
    global_step, episode, td_loss, q_mean = 0, 0, float("nan"), float("nan")

    checkpoint_path = out / "checkpoint.pt"
    ck = load_checkpoint(checkpoint_path, asdict(config))
    if ck is not None:
        q_network.load_state_dict(ck["q_network"])
        target_network.load_state_dict(ck["target_network"])
        optimizer.load_state_dict(ck["optimizer"])
        buffer.load_state(ck["buffer"])
        rng.bit_generator.state = ck["rng"]
        torch.random.set_rng_state(ck["torch_rng"])
        global_step, episode, start_e = ck["global_step"], ck["episode"], ck["start_e"]
        td_loss, q_mean = ck["td_loss"], ck["q_mean"]
        env.reset(seed=config.seed)  # creates the env's RNG, then overwritten with the saved one
        env.load_state(ck["env"])
        if store is not None and run_id is not None:
            store.drop_fill_after(run_id, episode, global_step)
    log = MetricsLog(out / "metrics.csv", METRICS, keep=episode, store=store, run_id=run_id)

    def save() -> None:
        save_checkpoint(checkpoint_path, config=asdict(config), q_network=q_network.state_dict(),
                        target_network=target_network.state_dict(), optimizer=optimizer.state_dict(),
                        buffer=buffer.state(), rng=rng.bit_generator.state, torch_rng=torch.random.get_rng_state(),
                        global_step=global_step, episode=episode, start_e=start_e, td_loss=td_loss, q_mean=q_mean,
                        env=env.state())

    returns: list[float] = []
    started = time.perf_counter()
    steps_at_start = global_step
    try:
        while episode < episodes:
            obs, info = env.reset(seed=config.seed) if episode == 0 else env.reset()
            done = False
            while not done:
                mask = info["action_mask"]
                eps = 1.0 if config.agent == "random" else epsilon(config, start_e, global_step)
                if rng.random() < eps:
                    action = int(rng.choice(np.flatnonzero(mask)))
                else:
                    action = greedy_action(q_network, batcher, obs, mask)
                next_obs, reward, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                buffer.add(types=obs["node_types"], focus=obs["focus"], target=obs["target"][0], action=action,
                           reward=reward, next_types=next_obs["node_types"], next_focus=next_obs["focus"],
                           done=float(terminated), next_mask=info["action_mask"])
                obs = next_obs
                global_step += 1

                if config.agent == "dqn" and global_step > config.learning_starts \
                        and global_step % config.train_frequency == 0:
                    data = buffer.sample(rng, config.batch_size)
                    td_target = td_targets(target_network, batcher, data, config.gamma)
                    old_val = q_network(batcher(data["types"], data["focus"], data["target"])).gather(
                        1, torch.as_tensor(data["action"])[:, None]).squeeze(1)
                    loss = nn.functional.mse_loss(old_val, td_target)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    td_loss, q_mean = float(loss.detach()), float(old_val.detach().mean())
                    if global_step % config.target_network_frequency == 0:
                        target_network.load_state_dict(q_network.state_dict())
                    if global_step % config.log_every == 0:
                        log.to_store(global_step, {"losses/td_loss": td_loss, "losses/q_values": q_mean,
                                                   "charts/epsilon": eps})

            episode += 1
            evaluation = info["evaluation"]
            sps = (global_step - steps_at_start) / max(time.perf_counter() - started, 1e-9)
            row = {"episode": episode, "global_step": global_step, "charts/episodic_return": reward,
                   "charts/epsilon": eps, "charts/SPS": round(sps, 2), "losses/td_loss": td_loss,
                   "losses/q_values": q_mean, "gap": evaluation["gap"], "gap_source": evaluation["source"],
                   "model_gap": evaluation["model_gap"], "dft_gap": evaluation["dft_gap"],
                   "dft_outcome": evaluation["dft_outcome"], "formula": info["formula"]}
            log.row(row)
            returns.append(reward)
            if store is not None and run_id is not None:
                store.record_episode(run_id, config.agent, episode, reward,
                                     {**evaluation, "formula": info["formula"], "global_step": global_step,
                                      "species": env.species()})
            if on_episode is not None:
                on_episode(row)
            if episode % config.checkpoint_every == 0 or episode == episodes:
                log.flush()
                save()
    finally:
        log.close()
    return {"episodes": episode, "global_step": global_step, "returns": returns,
            "counts": dict(env.evaluator.counts), "checkpoint": str(checkpoint_path)}


def evaluate(env, checkpoint: str | Path, episodes: int, seed: int = 0) -> list[float]:
    """Returns of the greedy (masked argmax) policy of a checkpoint over ``episodes`` episodes."""
    ck = torch.load(checkpoint, weights_only=False, map_location="cpu")
    config = DQNConfig(**ck["config"])
    batcher = GraphBatcher.for_env(env, config.gaussians)
    q_network = make_q_network(env.action_space.n, config, batcher)
    q_network.load_state_dict(ck["q_network"])
    returns = []
    for i in range(episodes):
        obs, info = env.reset(seed=seed) if i == 0 else env.reset()
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(greedy_action(q_network, batcher, obs,
                                                                              info["action_mask"]))
            done = terminated or truncated
        returns.append(float(reward))
    return returns


def load_config(values: dict[str, Any]) -> DQNConfig:
    """A DQNConfig from a mapping, refusing unknown names."""
    names = {f.name for f in fields(DQNConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown DQN settings {unknown}; known: {sorted(names)}")
    return DQNConfig(**values)
