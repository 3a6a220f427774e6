"""Reinforcement learning on the VI trading environment: the simulator over ``backtest``'s
execution model, the observation and action interpreters, the reward (kept apart, as qlib's
``qlib/rl`` keeps them), the gymnasium environment, episodes from a data root, PPO with RLlib's
new API stack, and the trained policy as a backtest strategy."""
