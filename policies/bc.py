"""Behaviour cloning for composition filling (paper a's baseline), CleanRL style: read it top to bottom.

The network of the online DQN (:mod:`rlcsp.policies.dqn`) read as logits over elements, trained by cross-entropy on the
expert's element at each focus site of :class:`rlcsp.design.fill_dataset.FillDataset`; the greedy policy is the masked
argmax, as for CQL. Paper a runs it unconditioned (``conditional=False`` zeroes the target in the global state) with
the CQL run's optimiser settings: Adam lr 3e-4, batch 1024, gradient norm clipped at 5.

Metric names are stable: ``losses/bc_loss`` and ``charts/accuracy`` (the batch's share of expert actions the
argmax reproduces), ``charts/SPS``, every ``log_every`` steps to ``metrics.csv`` and the store's ``metrics`` table.
The checkpoint holds the network, optimiser and every RNG, so a resumed run continues exactly.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcsp.policies.dqn import GraphBatcher, ReplayBuffer, make_q_network, on_device
from rlcsp.csp.stop import StopRequest
from rlcsp.policies.training_log import MetricsLog, load_checkpoint, save_checkpoint

METRICS = ("global_step", "losses/bc_loss", "charts/accuracy", "charts/SPS")


@dataclass
class BCConfig:
    seed: int = 1
    learning_rate: float = 3e-4
    batch_size: int = 1024
    max_grad_norm: float = 5.0
    conditional: bool = False
    hidden: int = 64
    blocks: int = 3
    gaussians: int = 16
    checkpoint_every: int = 25_000
    log_every: int = 100


def train(dataset, config: BCConfig, steps: int, out: str | Path, store=None, run_id: int | None = None,
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
    network = make_q_network(len(dataset.vocabulary), config, batcher).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    global_step, metrics = 0, {}

    checkpoint_path = out / "checkpoint.pt"
    ck = load_checkpoint(checkpoint_path, asdict(config))
    if ck is not None:
        dataset.check_vocabulary(ck["vocabulary"], f"checkpoint {checkpoint_path}")
        network.load_state_dict(ck["q_network"])
        optimizer.load_state_dict(ck["optimizer"])
        rng.bit_generator.state = ck["rng"]
        torch.random.set_rng_state(ck["torch_rng"])
        global_step, metrics = ck["global_step"], ck["metrics"]
        if store is not None and run_id is not None:  # metrics logged after the checkpoint are replayed
            store.drop_fill_after(run_id, 0, global_step)
    log = MetricsLog(out / "metrics.csv", METRICS, keep=global_step // config.log_every, store=store, run_id=run_id)

    def save() -> None:
        save_checkpoint(checkpoint_path, algorithm="bc", config=asdict(config), vocabulary=list(dataset.vocabulary),
                        max_elements=dataset.max_elements, q_network=network.state_dict(),
                        optimizer=optimizer.state_dict(), rng=rng.bit_generator.state,
                        torch_rng=torch.random.get_rng_state(), global_step=global_step, metrics=metrics)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=global_step, unit="step", desc="BC")
    started, steps_at_start = time.perf_counter(), global_step
    stopped = None
    try:
        with StopRequest() as stop:
            while global_step < steps and not (stopped := stop()):
                batch = buffer.sample(rng, config.batch_size)
                logits = network(on_device(batcher(batch["types"], batch["focus"], batch["target"], batch["graph"]),
                                           network))
                actions = torch.as_tensor(batch["action"], device=logits.device)
                loss = nn.functional.cross_entropy(logits, actions)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), config.max_grad_norm)
                optimizer.step()
                global_step += 1
                metrics = {"losses/bc_loss": float(loss.detach()),
                           "charts/accuracy": float((logits.detach().argmax(1) == actions).float().mean())}

                if global_step % config.log_every == 0:
                    sps = (global_step - steps_at_start) / max(time.perf_counter() - started, 1e-9)
                    metrics["charts/SPS"] = round(sps, 2)
                    log.row({"global_step": global_step, **metrics})
                    log.to_store(global_step, metrics)
                if bar is not None:
                    bar.update(1)
                    if global_step % 10 == 0:
                        bar.set_postfix(loss=f"{metrics['losses/bc_loss']:.3f}", refresh=False)
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
    return {"algorithm": "bc", "global_step": global_step, "stopped": stopped, "metrics": metrics,
            "checkpoint": str(checkpoint_path)}
