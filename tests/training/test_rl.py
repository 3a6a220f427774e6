"""The VI trading environment (gymnasium's checker, causality, rewards that add up to the
backtester's P&L), PPO with RLlib on a planted task, the registered policy as a backtest strategy,
and `vicap rl train` on a built data root."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from backtest.engine import BacktestConfig, Backtester
from backtest.execution import BUY, SELL, OrderRequest
from backtest.strategy import Decision, Strategy
from training.dataset import Normalizer
from training.rl.env import VITradingEnv
from training.rl.episodes import planted
from training.rl.interpreters import BUY_ACTION, HOLD, SELL_ACTION

SIM = {"horizon_s": 10}


@pytest.fixture(scope="module")
def session_episodes(applied, dataset):
    from feature_repo.definitions import SERVICE
    from feature_repo.store import open_store
    from training.dataset import load_dataset
    from training.pipeline import Split
    from training.rl import episodes

    ds = load_dataset(open_store(applied.feast), applied.labels, SERVICE)
    split = Split.of(ds, purge_days=0)
    days = {"train": split.fold.train, "test": split.fold.test}
    sets, _ = episodes.build(ds, days, applied.events, dataset, horizon_s=10)
    return sets["train"]


def test_the_environment_passes_gymnasiums_checker(session_episodes):
    check_env(VITradingEnv({"episodes": session_episodes, "sim": SIM}), skip_render_check=True)
    check_env(VITradingEnv({"episodes": planted(5), "sim": {"horizon_s": 20}}), skip_render_check=True)
    # a policy may also observe a model's four outputs at each decision
    rng = np.random.default_rng(0)
    observing = [dataclasses.replace(e, outputs=rng.random((10, 4)).astype(np.float32)) for e in planted(5)]
    env = VITradingEnv({"episodes": observing, "sim": {"horizon_s": 20}, "observe_outputs": True})
    assert env.observation_space.shape == (4 + 4 + 5,)
    check_env(env, skip_render_check=True)


def test_an_episode_may_start_later_than_the_first_decision_second():
    from training.rl.simulator import SimConfig

    ep = planted(1)[0]
    env = VITradingEnv({"episodes": [ep], "sim": {"horizon_s": 20, "start_s": 4}})
    obs, info = env.reset(options={"episode": 0})
    # at most the rest of the entry window (6 s) and a whole holding (20 s from the fill)
    assert env.sim.t == int(ep.decision_ts[4]) and info["steps"] == 6 + 20
    assert np.array_equal(obs[:4], ep.features[4])  # the features of decision 4, not 0
    steps = 0
    done = False
    while not done:
        _, _, done, _, _ = env.step(HOLD)
        steps += 1
    assert steps == 6  # staying out, it ends with the entry window
    with pytest.raises(ValueError, match="entry window"):
        SimConfig(start_s=10)


def _observations(episode, actions: list[int], upto: int) -> list[np.ndarray]:
    env = VITradingEnv({"episodes": [episode], "sim": SIM, "drawdown_weight": 0.0})
    obs, _ = env.reset(options={"episode": 0})
    seen = [obs]
    for a in actions[:upto]:
        obs, *_ = env.step(a)
        seen.append(obs)
    return seen


@pytest.mark.parametrize("k", [0, 3, 7])
def test_an_observation_at_second_k_ignores_everything_after_k(session_episodes, k):
    actions = [BUY_ACTION, HOLD, HOLD, HOLD, SELL_ACTION, HOLD, HOLD, HOLD, HOLD, HOLD]
    for ep in session_episodes[:6]:
        before = _observations(ep, actions, k)
        t_k = int(ep.decision_ts[0]) + k * 1_000_000
        tape = ep.tape
        later = tape.local_ts > t_k  # received after the observation: it must not matter
        moved = np.flatnonzero(later & (tape.book >= 0))
        books = np.concatenate([tape.books, tape.books[tape.book[moved]] + 1_000])
        book = tape.book.copy()
        book[moved] = len(tape.books) + np.arange(len(moved))
        tape = dataclasses.replace(
            tape,
            price=np.where(later, tape.price * 2, tape.price),
            last_price=np.where(later, tape.last_price * 2, tape.last_price),
            mark=np.where(later, tape.mark * 2, tape.mark),
            book=book,
            books=books,
        )
        features = ep.features.copy()
        features[k + 1 :] = np.random.default_rng(k).standard_normal(features[k + 1 :].shape)
        after = _observations(dataclasses.replace(ep, tape_source=tape, features=features), actions, k)
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)), ep.event.event_id


class _BuyThenSell(Strategy):
    """Buys the lot at decision 0 and sells it on the market second ``sell_at`` seconds after the
    first decision second: the env's actions (a step's sale goes out on its whole second)."""

    name = "scripted"

    def __init__(self, lot: float, first_decision: int, sell_at: int) -> None:
        super().__init__(lot)
        self.sell_ts = first_decision + sell_at * 1_000_000

    def on_decision(self, d: Decision, ctx):
        if d.offset_s == 0:
            qty = int(self.notional // d.last_price)
            return [OrderRequest(d.event.stock_code, BUY, qty, event_id=d.event.event_id)]
        return []

    def on_second(self, m, ctx):
        held = ctx.position(m.event.stock_code)
        if m.ts == self.sell_ts and held > 0:
            return [OrderRequest(m.event.stock_code, SELL, held, event_id=m.event.event_id)]
        return []


def test_rewards_sum_to_the_backtesters_net_pnl_for_the_same_actions(session_episodes):
    lot = 5_000_000.0
    env = VITradingEnv({"episodes": session_episodes, "sim": SIM, "drawdown_weight": 0.0})
    actions = [BUY_ACTION, HOLD, HOLD, HOLD, HOLD, SELL_ACTION, HOLD, HOLD, HOLD, HOLD]
    compared = 0
    for i, ep in enumerate(session_episodes[:12]):
        env.reset(options={"episode": i})
        total, done, step = 0.0, False, 0
        while not done:
            _, r, done, _, info = env.step(actions[min(step, len(actions) - 1)])
            total += r
            step += 1
        decisions = {
            ep.event.event_id: [
                Decision(ep.event, k, int(t), 0, {}, {}) for k, t in enumerate(ep.decision_ts)
            ]
        }
        run = Backtester(lambda c, d, tape=ep.tape: tape, BacktestConfig(capital=lot * 1.5)).run(
            _BuyThenSell(lot, int(ep.decision_ts[0]), 5), [ep.event], decisions
        )
        if any(run.account.positions.values()) or info["position"]:
            continue  # a sale that did not fill: each counts the holding at its own last mark
        bt_pnl = run.account.cash - lot * 1.5
        assert [(f.side, f.qty, f.price, f.fill_ts) for f in env.sim.fills] == [
            (f.side, f.qty, f.price, f.fill_ts) for f in run.fills
        ], ep.event.event_id
        assert total * lot == pytest.approx(bt_pnl, abs=1e-3), ep.event.event_id
        assert info["net_pnl"] == pytest.approx(bt_pnl, abs=1e-3)
        compared += len(run.fills) > 0
    assert compared >= 6  # most of them traded


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory):
    """PPO on the planted task: buy at the first second when the first feature is +1."""
    from training.ray_jobs import init_ray
    from training.rl.ppo import GreedyPolicy, PPOSettings, module_dir, train

    init_ray()
    episodes = planted(200, seed=0)
    for i in range(0, len(episodes), 4):  # a quarter end early (as a VI near the close does): 12 steps
        ep = episodes[i]
        episodes[i] = dataclasses.replace(
            ep, tape_source=ep.tape.window(0, int(ep.decision_ts[0]) + 12_500_000)
        )
    config = {"episodes": episodes, "sim": {"horizon_s": 20}, "drawdown_weight": 0.0}
    s = PPOSettings(iterations=10, batch_steps=1_000, minibatch=128, epochs=8, lr=1e-3)
    checkpoint, curve = train(config, s, tmp_path_factory.mktemp("ppo"))
    return GreedyPolicy(module_dir(checkpoint)), checkpoint, curve


def test_a_short_ppo_run_beats_a_random_policy_on_a_planted_task(trained_policy):
    from training.rl.ppo import evaluate, reference_policies

    policy, _, curve = trained_policy
    assert len(curve) == 10 and curve[-1]["env_steps"] >= 10_000
    # staying out ends with the entry window (10 steps), a held lot 20 s after its fill (22)
    assert 10 < curve[-1]["episode_len_mean"] < 22
    assert curve[-1]["episode_return_mean"] > curve[0]["episode_return_mean"]
    held_out = planted(100, seed=1)
    scores = evaluate(
        held_out, {"sim": {"horizon_s": 20}, "drawdown_weight": 0.0}, {"ppo": policy, **reference_policies()}
    )
    # the best policy earns about +1.2% of the lot per episode; random loses, staying out earns 0
    assert scores["ppo"]["mean_return"] > 0.005 > 0 > scores["random"]["mean_return"]
    assert scores["ppo"]["mean_return"] > scores["buy at the release"]["mean_return"] + 0.005


def test_the_registered_policy_trades_in_the_backtester(trained_policy):
    from training import registry
    from training.rl.policy import PolicyStrategy
    from training.rl.ppo import module_dir
    from training.rl.simulator import SimConfig

    _, checkpoint, _ = trained_policy
    names = ["sign", "noise_0", "noise_1", "noise_2"]
    identity = Normalizer(names, np.zeros(4), np.ones(4), np.zeros(0), np.ones(0))
    tag = registry.save_policy(module_dir(checkpoint), identity, {"env": {"sim": {"horizon_s": 20}}})
    greedy, normalizer, meta = registry.load_policy(tag)
    episodes = planted(60, seed=2)
    tapes = {e.event.stock_code: e.tape for e in episodes}
    decisions = {
        e.event.event_id: [
            Decision(
                e.event,
                k,
                int(t),
                e.tape.last_trade_at(int(t)),
                dict(zip(names, e.features[k].tolist(), strict=True)),
                {},
            )
            for k, t in enumerate(e.decision_ts)
        ]
        for e in episodes
    }
    strategy = PolicyStrategy(greedy, normalizer, SimConfig.from_dict(meta["env"]["sim"]))
    run = Backtester(lambda code, day: tapes[code]).run(strategy, [e.event for e in episodes], decisions)
    trades = run.lots_frame()
    rising = {e.event.event_id for e in episodes if e.features[0, 0] > 0}
    # it buys the rising ones (as in the environment), holds them to the horizon, and earns
    assert len(trades) >= 0.6 * len(rising) and trades["event_id"].isin(rising).mean() > 0.9
    assert trades["pnl"].sum() > 0 and (trades["exit_reason"] == "horizon").mean() > 0.5


def test_a_model_is_not_loaded_as_a_policy():
    import bentoml

    from training import registry

    with bentoml.models.create(
        "vicap-not-a-policy", labels={"kind": "lightgbm"}, metadata={"kind": "lightgbm"}
    ) as ref:
        pass
    with pytest.raises(ValueError, match="not a registered policy"):
        registry.load_policy(str(ref.tag))


def test_rl_train_registers_a_policy_that_the_backtest_compares(applied, dataset, monkeypatch):
    import json

    from typer.testing import CliRunner

    from vicap.cli import app

    if not applied.raw.exists():  # the session's ticks live beside the built root
        applied.raw.symlink_to(dataset)
    monkeypatch.setenv("VICAP_DATA_DIR", str(applied.root))
    runner = CliRunner()
    args = [
        "rl",
        "train",
        "--iterations",
        "2",
        "--batch-steps",
        "200",
        "--horizon-s",
        "20",
        "--purge-days",
        "0",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "PPO learning curve" in out.output and "registered vicap-ppo:" in out.output
    assert "random" in out.output and "stay out" in out.output  # the reference policies beside it
    args = ["backtest", "--strategy", "buy-and-hold", "--strategy", "ppo", "--policy", "vicap-ppo"]
    args += ["--run", "rl", "--purge-days", "0"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    metrics = json.loads((applied.reports / "backtest" / "rl" / "metrics.json").read_text())
    assert any(k.startswith("ppo (vicap-ppo:") for k in metrics)
    out = runner.invoke(app, ["backtest", "--strategy", "ppo"])
    assert out.exit_code == 2 and "needs --policy" in out.output
