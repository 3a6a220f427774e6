"""Speed of the RL environment and of PPO (RLlib, new API stack) on this machine: environment steps
per second under a random policy (the baseline, the same run), RLlib's sampling (environment plus
RLModule inference and connectors) and its learning, per environment step."""

from __future__ import annotations

import time

import numpy as np

from bench.common import publish
from training.ray_jobs import init_ray
from training.rl.env import VITradingEnv
from training.rl.episodes import planted
from training.rl.ppo import PPOSettings, algorithm

HORIZON_S = 20


def random_rollout(env: VITradingEnv, steps: int, seed: int = 0) -> float:
    """Environment steps per second under uniformly random actions."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, done, _, _ = env.step(int(rng.integers(3)))
        if done:
            env.reset()
    return steps / (time.perf_counter() - t0)


def main(iterations: int = 4, batch_steps: int = 2_000) -> dict:
    config = {"episodes": planted(200, seed=0), "sim": {"horizon_s": HORIZON_S}, "drawdown_weight": 0.1}
    env = VITradingEnv(config)
    random_rollout(env, 2_000)  # numba kernels and the calendar warm
    random_steps = random_rollout(env, 20_000)
    init_ray()
    algo = algorithm(config, PPOSettings(batch_steps=batch_steps, minibatch=256))
    timers = []
    try:
        for i in range(iterations):
            t0 = time.perf_counter()
            result = algo.train()
            if i:  # the first iteration builds the module and warms up
                t = result["timers"]
                timers.append(
                    (t["env_runner_sampling_timer"], t["learner_update_timer"], time.perf_counter() - t0)
                )
    finally:
        algo.stop()
    sampling, learning, whole = (float(np.mean(x)) for x in zip(*timers, strict=True))
    rows = [
        {"what": "environment, random policy (baseline)", "steps_per_s": random_steps},
        {"what": "PPO sampling (env + RLModule + connectors)", "steps_per_s": batch_steps / sampling},
        {"what": "PPO learning (6 epochs, minibatch 256)", "steps_per_s": batch_steps / learning},
        {"what": "PPO iteration, whole", "steps_per_s": batch_steps / whole},
    ]
    notes = {
        "episodes": f"planted, {HORIZON_S} steps each",
        "batch_steps": batch_steps,
        "iterations_timed": len(timers),
        "env_runners": "0 (sampling in the driver, two cores here)",
    }
    publish("rl", "RL environment and PPO throughput (environment steps per second)", rows, notes)
    return {"rows": rows, "notes": notes}


if __name__ == "__main__":
    main()
