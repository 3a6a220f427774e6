"""The model service: its answers equal the model on the offline rows, bad requests get a 4xx with
a clear message (never a 500 or a traceback), in-process, through the ASGI client and against a
real ``bentoml serve`` process over HTTP."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from feature_repo.definitions import SERVICE

MODEL_NAME, POLICY_NAME = "vicap-svc-lightgbm", "vicap-svc-ppo"
TOKEN = "svc-test-token-3f9a"


@pytest.fixture(scope="module")
def registered(applied):
    """A LightGBM trained on the session's store and an (untrained, but real) PPO RLModule over the
    same features, both registered; the dataset they saw."""
    import gymnasium as gym
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from feature_repo import store
    from training import registry
    from training.dataset import Normalizer, load_dataset
    from training.models import LightGBM
    from training.rl.interpreters import ACTIONS, ObservationInterpreter
    from training.rl.simulator import SimConfig

    ds = load_dataset(store.open_store(applied.feast), applied.labels, SERVICE)
    days = ds.days
    model = LightGBM(rounds=20).fit(ds.on_days(days[:-1]), ds.on_days(days[-1:]))
    meta = {"feature_service": SERVICE, "channels": [], "data_from": str(days[0]), "data_to": str(days[-1])}
    model_tag = registry.save(model, meta, name=MODEL_NAME)
    normalizer = Normalizer.fit(ds)
    size = ObservationInterpreter(len(normalizer.names)).size
    spec = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=gym.spaces.Box(-10.0, 10.0, (size,), np.float32),
        action_space=gym.spaces.Discrete(len(ACTIONS)),
        model_config=DefaultModelConfig(fcnet_hiddens=[16]),
    )
    module_path = applied.root / "svc-policy"
    spec.build().save_to_path(str(module_path))
    env = {"sim": SimConfig(horizon_s=60).to_dict(), "observe_outputs": False}
    policy_tag = registry.save_policy(
        module_path, normalizer, {"feature_service": SERVICE, "env": env}, POLICY_NAME
    )
    return model_tag, policy_tag, ds, model


@pytest.fixture(scope="module")
def decisions(applied, registered):
    from serving.decisions import DecisionService

    return DecisionService(applied.feast, "sqlite", registered[0], registered[1])


def _key(ds, row: int = 0) -> dict:
    r = ds.frame.iloc[row]
    return {"event_id": r["event_id"], "decision_offset": int(r["decision_offset_s"])}


def _as_served(decisions, ds, rows: np.ndarray):
    """The offline rows as the online store serves them: equal but for the stock context, which it
    holds as of its newest day (materialize keeps the latest row per stock)."""
    from serving.schemas import DecisionKey
    from training.dataset import VIDataset

    frame = ds.frame.iloc[rows].reset_index(drop=True).copy()
    for r, i in enumerate(rows):
        online = decisions.reads.read(DecisionKey(**_key(ds, i)))
        for n in ds.tabular:
            value = np.nan if online[n] is None else online[n]  # Feast: missing is None
            if n.startswith("ctx_"):
                frame.loc[r, n] = value
            else:
                assert value == pytest.approx(ds.frame[n].iloc[i], nan_ok=True), n
    return VIDataset(frame, ds.tabular, None, [])


def test_predict_answers_what_the_model_says_on_the_offline_row(decisions, registered):
    from feature_repo.labels import HORIZONS_S
    from serving.schemas import DecisionKey
    from training.dataset import CAUSES

    _, _, ds, model = registered
    rows = np.linspace(0, len(ds) - 1, 12).astype(int)
    served = _as_served(decisions, ds, rows)
    frame = served.frame
    offline = model.predict(served)
    j = HORIZONS_S.index(60)  # the main horizon
    for r, i in enumerate(rows):
        got = decisions.predict(DecisionKey(**_key(ds, i)))
        assert got.rebound_probability == pytest.approx(offline.rebound[r, j], abs=1e-6)
        assert got.continuation_probability == pytest.approx(offline.continuation[r, j], abs=1e-6)
        direction = frame["trig_direction"].iloc[r]
        assert got.expected_return == pytest.approx(direction * offline.ret_dir[r, j], abs=1e-6)
        assert got.entry_second == int(np.argmax(offline.entry[r])) and 0 <= got.entry_second <= 9
        assert list(got.cause_probabilities) == list(CAUSES)
        assert sum(got.cause_probabilities.values()) == pytest.approx(1.0)
        assert got.model_version == registered[0] and got.horizon_s == 60


def test_unknown_events_and_offsets_outside_0_to_9_are_refused(decisions, registered):
    from pydantic import ValidationError

    from serving.decisions import UnknownDecision
    from serving.schemas import DecisionKey

    event_id = registered[2].frame["event_id"].iloc[0]
    with pytest.raises(UnknownDecision, match="no VI '123456-1'"):
        decisions.predict(DecisionKey(event_id="123456-1", decision_offset=0))
    with pytest.raises(ValidationError, match="less than or equal to 9"):
        DecisionKey(event_id=event_id, decision_offset=10)
    with pytest.raises(ValidationError, match="pattern"):
        DecisionKey(event_id="not-an-event", decision_offset=0)


def test_act_is_the_policy_on_the_environments_observation(decisions, registered):
    from serving.schemas import ActRequest
    from training import registry
    from training.rl.interpreters import ACTIONS, ObservationInterpreter
    from training.rl.simulator import SimConfig

    _, policy_tag, ds, _ = registered
    greedy, normalizer, meta = registry.load_policy(policy_tag)
    sim = SimConfig.from_dict(meta["env"]["sim"])
    interpreter = ObservationInterpreter(len(normalizer.names))
    seen = set()
    rows = np.linspace(0, len(ds) - 1, 10).astype(int)
    served = normalizer.tabular(_as_served(decisions, ds, rows))
    for r, i in enumerate(rows):
        key = _key(ds, i)
        for holding, last in ((False, 10_000.0), (True, 10_500.0), (True, 9_400.0)):
            got = decisions.act(
                ActRequest(**key, holding=holding, entry_price=10_000.0 if holding else 0.0,
                           start_price=10_000.0, last_price=last)
            )  # fmt: skip
            k = key["decision_offset"]
            features = served[r]
            obs = interpreter.observe(
                features, None, holding, 10_000.0 if holding else 0.0, 10_000.0, last, sim.time_through(k),
                sim.start_s <= k < sim.entry_window_s,
            )  # fmt: skip
            assert got.action == ACTIONS[greedy(obs)] and got.policy_version == policy_tag
            seen.add(got.action)
    assert seen <= set(ACTIONS)


def test_metadata_names_the_model_policy_service_and_feature_hash(decisions, registered):
    from training.dataset import feature_list_hash

    m = decisions.metadata()
    assert (m.model_version, m.policy_version, m.feature_service) == (registered[0], registered[1], SERVICE)
    assert (
        m.feature_list_hash == feature_list_hash(registered[2].tabular)
        and m.features == registered[2].tabular
    )
    assert m.online_store == "sqlite" and decisions.healthy()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(decisions):
    """The service's ASGI app (one per process: BentoML registers its metrics globally)."""
    from starlette.testclient import TestClient

    from serving.service import make_service

    with TestClient(make_service(lambda: decisions, TOKEN).to_asgi(), headers=AUTH) as c:
        yield c


def test_the_asgi_app_answers_json_and_4xx_never_500(client, decisions, registered):
    from serving.schemas import DecisionKey

    ds = registered[2]
    key = _key(ds)
    ok = client.post("/predict", json=key)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert set(body) >= {"rebound_probability", "expected_return", "entry_second", "cause_probabilities",
                         "model_version"}  # fmt: skip
    assert body == decisions.predict(DecisionKey(**key)).model_dump()
    bad = {
        "offset 10": {**key, "decision_offset": 10},
        "offset -1": {**key, "decision_offset": -1},
        "missing offset": {"event_id": key["event_id"]},
        "text offset": {**key, "decision_offset": "soon"},
        "extra field": {**key, "price": 1},
        "malformed event": {**key, "event_id": "005930"},
    }
    for what, payload in bad.items():
        r = client.post("/predict", json=payload)
        assert r.status_code == 400, (what, r.status_code, r.text)
        assert "Traceback" not in r.text and r.text, what
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "Traceback" not in r.text
    r = client.post("/predict", json={"event_id": "123456-42", "decision_offset": 3})
    assert r.status_code == 404 and "no VI '123456-42'" in r.text
    act = client.post("/act", json={**key, "start_price": 10_000, "last_price": 10_100})
    assert act.status_code == 200 and act.json()["action"] in ("hold", "buy", "sell")
    assert client.post("/act", json={**key, "start_price": 0, "last_price": 1}).status_code == 400
    meta = client.get("/metadata")
    assert meta.status_code == 200 and meta.json()["model_version"] == registered[0]
    assert client.get("/healthz").status_code == 200


def test_a_bearer_token_guards_everything_but_the_probes(client, registered):
    key = _key(registered[2])
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200
    for auth in ("", "Bearer wrong", TOKEN, f"Basic {TOKEN}"):
        r = client.post("/predict", json=key, headers={"Authorization": auth})
        assert r.status_code == 401 and TOKEN not in r.text, auth
    assert client.get("/metadata", headers={"Authorization": ""}).status_code == 401
    assert client.post("/predict", json=key).status_code == 200  # the client's own header


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_bentoml_serve_process_over_http(applied, registered, tmp_path, monkeypatch):
    import bentoml
    import httpx

    from vicap.serve_cmd import ServiceProcess, serve_environment
    from vicap.settings import get_settings

    monkeypatch.setenv("VICAP_DATA_DIR", str(applied.root))
    monkeypatch.setenv("VICAP_SERVICE_TOKEN", TOKEN)
    env = serve_environment(get_settings(), registered[0], registered[1])
    key = _key(registered[2])
    port = _free_port()
    with ServiceProcess(env, port=port, log=tmp_path / "serve.log") as svc:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with bentoml.SyncHTTPClient(svc.url, token=TOKEN) as client:
            answer = client.predict(**key)
        assert answer["model_version"] == registered[0]
        assert sum(answer["cause_probabilities"].values()) == pytest.approx(1.0)
        r = httpx.post(svc.url + "/predict", json={**key, "decision_offset": 12}, headers=auth)
        assert r.status_code == 400 and "decision_offset" in r.text and "Traceback" not in r.text
        r = httpx.post(
            svc.url + "/predict", json={"event_id": "123456-42", "decision_offset": 0}, headers=auth
        )
        assert r.status_code == 404
        assert httpx.post(svc.url + "/predict", json=key).status_code == 401
        meta = httpx.get(svc.url + "/metadata", headers=auth).json()
        assert meta["policy_version"] == registered[1] and meta["feature_service"] == SERVICE
        assert httpx.get(svc.url + "/healthz").status_code == 200
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert TOKEN not in log and "Service vicap initialized" in log


def test_without_a_policy_act_says_so_and_predict_still_answers(applied, registered):
    from serving.decisions import DecisionService, NoPolicy
    from serving.schemas import ActRequest, DecisionKey

    key = _key(registered[2])
    alone = DecisionService(applied.feast, "sqlite", registered[0], "vicap-no-such-policy")
    assert alone.metadata().policy_version is None
    assert alone.predict(DecisionKey(**key)).model_version == registered[0]
    with pytest.raises(NoPolicy, match="no registered policy 'vicap-no-such-policy'"):
        alone.act(ActRequest(**key, start_price=10_000, last_price=10_000))


def test_vicap_serve_names_a_missing_model_or_store_instead_of_starting(
    applied, registered, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from vicap.cli import app

    monkeypatch.setenv("VICAP_DATA_DIR", str(applied.root))
    out = CliRunner().invoke(app, ["serve", "--model", "vicap-no-such-model"])
    assert out.exit_code == 2 and "no registered model 'vicap-no-such-model'" in out.output
    out = CliRunner().invoke(app, ["serve", "--model", registered[0], "--data-dir", str(tmp_path)])
    assert out.exit_code == 2 and "no Feast registry" in out.output
