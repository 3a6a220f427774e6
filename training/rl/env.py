"""``VITradingEnv``: the gymnasium environment over the simulator, the interpreters and the reward.

``env_config`` (a dict, as RLlib passes it): ``episodes`` (a list of :class:`Episode`) or
``episodes_path`` (a file written by :func:`training.rl.episodes.save`) with ``split`` (train,
validation or test); ``sim`` (:meth:`SimConfig.to_dict`); ``drawdown_weight``; ``observe_outputs``
(append the model's outputs). ``reset(options={"episode": i})`` replays episode i; without it an
episode is drawn with the environment's seeded generator.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from training.rl.interpreters import BUY_ACTION, SELL_ACTION, ObservationInterpreter, decision_row
from training.rl.reward import Reward
from training.rl.simulator import Episode, SimConfig, Simulator


class VITradingEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, config: dict | None = None) -> None:
        config = dict(config or {})
        if "episodes" in config:
            self.episodes: list[Episode] = list(config["episodes"])
        else:
            from training.rl.episodes import load

            self.episodes = load(config["episodes_path"])[config.get("split", "train")]
        if not self.episodes:
            raise ValueError("VITradingEnv needs at least one episode")
        self.sim_config = SimConfig.from_dict(config.get("sim", {}))
        first = self.episodes[0]
        outputs = first.outputs.shape[1] if config.get("observe_outputs") and first.outputs is not None else 0
        self.interpreter = ObservationInterpreter(first.features.shape[1], outputs)
        self.reward = Reward(self.sim_config.lot_notional, float(config.get("drawdown_weight", 0.1)))
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (self.interpreter.size,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.sim: Simulator | None = None

    def observe(self) -> np.ndarray:
        sim, ep = self.sim, self.sim.ep
        row = decision_row(sim.k, len(ep.features))
        outputs = ep.outputs[row] if self.interpreter.n_outputs else None
        return self.interpreter.observe(
            ep.features[row], outputs, sim.position > 0, sim.entry_price, sim.start_price, sim.mark(),
            self.sim_config.time_through(sim.k), sim.k < self.sim_config.entry_window_s,
        )  # fmt: skip

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        i = (options or {}).get("episode")
        i = int(self.np_random.integers(len(self.episodes))) if i is None else int(i)
        self.sim = Simulator(self.episodes[i], self.sim_config)
        self.reward.reset(self.sim.equity())
        return self.observe(), {"event_id": self.sim.ep.event.event_id, "steps": self.sim.steps}

    def step(self, action):
        sim = self.sim
        if action == BUY_ACTION:
            sim.buy()
        elif action == SELL_ACTION:
            sim.sell()
        sim.advance()
        reward = self.reward(sim.equity())
        info = {"net_pnl": sim.net_pnl(), "position": sim.position}
        return self.observe(), float(reward), sim.done, False, info
