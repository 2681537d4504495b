"""Offline discrete CQL for composition filling (seed paper a), CleanRL style: read it top to bottom.

Conservative Q-learning learns from expert fillings alone (:class:`rlcsp.design.fill_dataset.FillDataset`), so the
Q-network must not overrate elements the data never chose. Loss, as paper a's code (CORL's discrete CQL):

    alpha * mean(T logsumexp(Q(s, .) / T) - Q(s, a)) + 0.5 * MSE(Q(s, a), r + gamma (1 - d) max_a' Q_tgt(s', a'))

with the max over the env's allowed next actions. Paper a's settings: alpha 1 (a sweep used 5), T 1, gamma 0.99,
Adam lr 3e-4, batch 1024, soft target update tau 5e-3 every step, gradient norm clipped at 5, 200k steps, a
checkpoint every 25k. ``conditional`` puts the target p_hat in the global state; unconditional CQL zeroes it
(paper a's ``--no_condition``). The Q-network and batching are the online DQN's (:mod:`rlcsp.policies.dqn`).

Metric names are stable: ``losses/loss``, ``losses/td_loss``, ``losses/cql_loss`` (the conservative term before
alpha), ``losses/q_values`` (mean Q of the data's actions), ``losses/logsumexp``, ``charts/SPS``, every
``log_every`` steps to ``metrics.csv`` and the store's ``metrics`` table. The checkpoint holds both networks, the
optimiser and every RNG, so a resumed run continues exactly.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcsp.policies.dqn import GraphBatcher, ReplayBuffer, make_q_network, on_device, td_targets
from rlcsp.csp.stop import StopRequest
from rlcsp.policies.training_log import MetricsLog, load_checkpoint, save_checkpoint
from rlcsp.exceptions import ConfigError

METRICS = ("global_step", "losses/loss", "losses/td_loss", "losses/cql_loss", "losses/q_values", "losses/logsumexp",
           "charts/SPS")


@dataclass
class CQLConfig:
    seed: int = 1
    alpha: float = 1.0
    temperature: float = 1.0
    gamma: float = 0.99
    learning_rate: float = 3e-4
    batch_size: int = 1024
    tau: float = 5e-3
    max_grad_norm: float = 5.0
    conditional: bool = True
    hidden: int = 64
    blocks: int = 3
    gaussians: int = 16
    checkpoint_every: int = 25_000
    log_every: int = 100

    def __post_init__(self):
        if self.alpha < 0 or self.temperature <= 0 or not 0 < self.tau <= 1:
            raise ConfigError(f"CQL needs alpha >= 0, temperature > 0 and 0 < tau <= 1; got {self}")


def cql_loss(q_values: torch.Tensor, actions: torch.Tensor, td_target: torch.Tensor, alpha: float,
             temperature: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Paper a's loss of a batch: Q-values (B, A), the data's actions (B,), TD targets (B,)."""
    q_taken = q_values.gather(1, actions[:, None]).squeeze(1)
    logsumexp = temperature * torch.logsumexp(q_values / temperature, dim=1)
    conservative = (logsumexp - q_taken).mean()
    td_loss = 0.5 * nn.functional.mse_loss(q_taken, td_target)
    loss = alpha * conservative + td_loss
    parts = {"losses/loss": loss, "losses/td_loss": td_loss, "losses/cql_loss": conservative,
             "losses/q_values": q_taken.mean(), "losses/logsumexp": logsumexp.mean()}
    return loss, {name: float(value.detach()) for name, value in parts.items()}


def train(dataset, config: CQLConfig, steps: int, out: str | Path, store=None, run_id: int | None = None,
          progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Train (or resume from ``out/checkpoint.pt``) until ``steps`` gradient steps are done; returns a summary.

    Asking a finished run for more steps continues it exactly as if it had run that long in one go (on one
    device: a GPU's sums are not ordered). SIGINT/SIGTERM stop it after the step in flight, checkpointed, with
    ``stopped`` in the summary. ``device`` holds the networks; batches are built on the host.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = dataset.transitions()
    if not config.conditional:
        data["target"] = np.zeros_like(data["target"])
    buffer = ReplayBuffer.from_arrays(data)
    batcher = GraphBatcher(dataset.skeletons(), dataset.blank, config.gaussians)
    q_network = make_q_network(len(dataset.vocabulary), config, batcher).to(device)
    target_network = copy.deepcopy(q_network)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate)
    global_step, metrics = 0, {}

    checkpoint_path = out / "checkpoint.pt"
    ck = load_checkpoint(checkpoint_path, asdict(config))
    if ck is not None:
        dataset.check_vocabulary(ck["vocabulary"], f"checkpoint {checkpoint_path}")
        q_network.load_state_dict(ck["q_network"])
        target_network.load_state_dict(ck["target_network"])
        optimizer.load_state_dict(ck["optimizer"])
        rng.bit_generator.state = ck["rng"]
        torch.random.set_rng_state(ck["torch_rng"])
        global_step, metrics = ck["global_step"], ck["metrics"]
        if store is not None and run_id is not None:  # metrics logged after the checkpoint are replayed
            store.drop_fill_after(run_id, 0, global_step)
    log = MetricsLog(out / "metrics.csv", METRICS, keep=global_step // config.log_every, store=store, run_id=run_id)

    def save() -> None:
        save_checkpoint(checkpoint_path, algorithm="cql", config=asdict(config), vocabulary=list(dataset.vocabulary),
                        max_elements=dataset.max_elements, q_network=q_network.state_dict(),
                        target_network=target_network.state_dict(), optimizer=optimizer.state_dict(),
                        rng=rng.bit_generator.state, torch_rng=torch.random.get_rng_state(),
                        global_step=global_step, metrics=metrics)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=global_step, unit="step",
                   desc=f"CQL alpha={config.alpha:g}{'' if config.conditional else ' (unconditional)'}")
    started, steps_at_start = time.perf_counter(), global_step
    stopped = None
    try:
        with StopRequest() as stop:
            while global_step < steps and not (stopped := stop()):
                batch = buffer.sample(rng, config.batch_size)
                td_target = td_targets(target_network, batcher, batch, config.gamma)
                graph = batcher(batch["types"], batch["focus"], batch["target"], batch["graph"])
                q_values = q_network(on_device(graph, q_network))
                loss, metrics = cql_loss(q_values, torch.as_tensor(batch["action"], device=q_values.device), td_target,
                                         config.alpha, config.temperature)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(q_network.parameters(), config.max_grad_norm)
                optimizer.step()
                with torch.no_grad():
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.lerp_(param, config.tau)
                global_step += 1

                if global_step % config.log_every == 0:
                    sps = (global_step - steps_at_start) / max(time.perf_counter() - started, 1e-9)
                    metrics["charts/SPS"] = round(sps, 2)
                    log.row({"global_step": global_step, **metrics})
                    log.to_store(global_step, metrics)
                if bar is not None:
                    bar.update(1)
                    if global_step % 10 == 0:
                        bar.set_postfix(loss=f"{metrics['losses/loss']:.3f}",
                                        td=f"{metrics['losses/td_loss']:.3f}", refresh=False)
                if global_step % config.checkpoint_every == 0 or global_step == steps:
                    log.flush()
                    save()
            if stopped:
                log.flush()
                save()
    finally:
        log.close()
        if bar is not None:
            bar.close()
    return {"algorithm": "cql", "global_step": global_step, "stopped": stopped, "metrics": metrics,
            "checkpoint": str(checkpoint_path)}
