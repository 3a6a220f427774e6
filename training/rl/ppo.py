"""PPO on ``VITradingEnv`` with RLlib's new API stack: training with progress and checkpoints,
the trained RLModule exported for inference without the Algorithm, greedy evaluation of a policy
on held-out episodes beside a random policy, staying out and buying at the release."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from training.rl.env import VITradingEnv
from training.rl.interpreters import BUY_ACTION, HOLD
from training.rl.simulator import Episode

RL_MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")


@dataclass(frozen=True)
class PPOSettings:
    iterations: int = 20
    batch_steps: int = 2_000  # environment steps per iteration
    minibatch: int = 256
    epochs: int = 6
    lr: float = 3e-4
    gamma: float = 0.99
    hidden: tuple[int, ...] = (64, 64)
    env_runners: int = 0  # 0: sample in the driver (two cores here); more on a cluster
    seed: int = 0
    extra: dict = field(default_factory=dict)


def algorithm(env_config: dict, s: PPOSettings):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    config = (
        PPOConfig()
        .environment(VITradingEnv, env_config=env_config)
        .env_runners(num_env_runners=s.env_runners, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .training(
            train_batch_size_per_learner=s.batch_steps, minibatch_size=s.minibatch, num_epochs=s.epochs,
            lr=s.lr, gamma=s.gamma, **s.extra,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(s.hidden)))
        .debugging(seed=s.seed)
    )  # fmt: skip
    return config.build_algo()


def train(
    env_config: dict, s: PPOSettings, run_dir: Path, on_iteration: Callable[[int, dict], None] | None = None
) -> tuple[Path, list[dict]]:
    """``s.iterations`` PPO iterations, a checkpoint after each (the last kept); returns the last
    checkpoint and the learning curve (per iteration: mean episode return, steps, seconds)."""
    algo = algorithm(env_config, s)
    curve: list[dict] = []
    checkpoint = run_dir / "checkpoint"
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("PPO", total=s.iterations)
            for i in range(s.iterations):
                t0 = time.perf_counter()
                result = algo.train()
                runners = result.get("env_runners", {})
                row = {
                    "iteration": i + 1,
                    "episode_return_mean": float(runners.get("episode_return_mean", float("nan"))),
                    "episode_len_mean": float(runners.get("episode_len_mean", float("nan"))),
                    "env_steps": int(runners.get("num_env_steps_sampled_lifetime", 0)),
                    "seconds": time.perf_counter() - t0,
                }
                curve.append(row)
                algo.save_to_path(str(checkpoint))
                bar.update(task, advance=1, description=f"PPO return {row['episode_return_mean']:+.4f}")
                if on_iteration:
                    on_iteration(i, row)
    finally:
        algo.stop()
    return checkpoint, curve


def module_dir(checkpoint: Path) -> Path:
    return Path(checkpoint).joinpath(*RL_MODULE_PATH)


class GreedyPolicy:
    """The exported RLModule's most likely action, without the Algorithm."""

    def __init__(self, module_path: Path) -> None:
        import torch
        from ray.rllib.core.rl_module.rl_module import RLModule

        self._torch = torch
        self.module = RLModule.from_checkpoint(str(module_path))

    def __call__(self, obs: np.ndarray) -> int:
        with self._torch.no_grad():
            out = self.module.forward_inference({"obs": self._torch.as_tensor(obs[None, :])})
        return int(out["action_dist_inputs"][0].argmax())


def rollout(env: VITradingEnv, policy: Callable[[np.ndarray], int], episode: int) -> dict:
    """One episode under ``policy``: its return, net P&L after costs and the actions taken."""
    obs, info = env.reset(options={"episode": episode})
    done, total, actions = False, 0.0, []
    while not done:
        a = policy(obs)
        actions.append(a)
        obs, r, done, _, step = env.step(a)
        total += r
    return {"event_id": info["event_id"], "return": total, "net_pnl": step["net_pnl"], "actions": actions}


def evaluate(episodes: list[Episode], env_config: dict, policies: dict[str, Callable], seed: int = 0) -> dict:
    """Each policy on every episode: mean return, net P&L per episode and the share of episodes
    it traded in."""
    env = VITradingEnv({**env_config, "episodes": episodes})
    out = {}
    for name, policy in policies.items():
        runs = [rollout(env, policy, i) for i in range(len(episodes))]
        pnl = np.array([r["net_pnl"] for r in runs])
        out[name] = {
            "episodes": len(runs),
            "mean_return": float(np.mean([r["return"] for r in runs])) if runs else float("nan"),
            "mean_net_pnl": float(pnl.mean()) if runs else float("nan"),
            "traded": float(np.mean([BUY_ACTION in r["actions"] for r in runs])) if runs else float("nan"),
        }
    return out


def reference_policies(seed: int = 0) -> dict[str, Callable[[np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    return {
        "random": lambda obs: int(rng.integers(3)),
        "stay out": lambda obs: HOLD,
        "buy at the release": lambda obs: BUY_ACTION,
    }
