"""The feature suites catch broken tables; the `vicap features` commands and their errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from feature_repo.checks import validate_features
from feature_repo.store import online_store_config, shown_url
from vicap.cli import app


def test_a_broken_feature_table_fails_its_suite(built, tmp_path):
    tables = {
        name: pq.read_table(built.features / f"{name}.parquet")
        for name in ("vi_event_features", "vi_decision_features", "stock_context", "vi_sequence")
    }
    events = tables["vi_event_features"].to_pandas()
    events.loc[0, "pre_volume_burst"] = np.inf  # infinite
    events.loc[1, "trig_direction"] = np.nan  # null where none is allowed
    events.loc[2, "pre_buy_ratio_10s"] = 1.5  # out of its range
    tables["vi_event_features"] = pa.Table.from_pandas(events, preserve_index=False)
    labels = pq.read_table(built.labels / "labels.parquet").to_pandas()
    labels.loc[3, "best_entry_s"] = 10  # no decision 10 s after the release
    tables["labels"] = pa.Table.from_pandas(labels, preserve_index=False)
    failed, docs = validate_features(tables, tmp_path / "reports")
    assert "vi_event_features: expect_column_values_to_not_be_null(trig_direction) fails on 1 rows" in failed
    assert "vi_event_features: expect_krx_values_finite fails on 1 rows" in failed
    assert any("pre_buy_ratio_10s" in f for f in failed) and docs.exists()
    assert any(f.startswith("labels:") and "best_entry_s" in f for f in failed)
    assert not any(f.startswith(("vi_decision_features", "stock_context", "vi_sequence")) for f in failed)


def test_features_build_names_the_missing_events_file(dataset, data_dir):
    result = CliRunner().invoke(
        app, ["features", "build", "--dataset", str(dataset), "--events", str(data_dir / "none.parquet")]
    )
    said = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2 and "none.parquet: no events" in said


def test_online_store_setting_is_sqlite_or_a_redis_url(tmp_path):
    assert online_store_config("sqlite", tmp_path).path.endswith("online.db")
    assert online_store_config("redis://10.0.0.5:6380/2", tmp_path).connection_string == "10.0.0.5:6380,db=2"
    with pytest.raises(ValueError, match=r"expected 'sqlite' or redis\[s\]://host:port"):
        online_store_config("postgres://x", tmp_path)


def test_a_production_redis_url_with_password_tls_or_cluster_becomes_feasts_options(tmp_path):
    """Feast's connection-string options (password, ssl, redis_type) from one URL; the password
    stays out of error messages."""
    tls = online_store_config("rediss://vicap:s3cret%3F@cache.internal:6380/1", tmp_path)
    assert tls.connection_string == "cache.internal:6380,db=1,username=vicap,password=s3cret?,ssl=true"
    assert tls.redis_type == "redis"
    cluster = online_store_config("redis://:pw@node1:7000?cluster=true", tmp_path)
    assert cluster.connection_string == "node1:7000,password=pw,skip_full_coverage_check=true"
    assert cluster.redis_type == "redis_cluster"
    with pytest.raises(ValueError, match="no database number") as raised:
        online_store_config("redis://:topsecret@node1:7000/3?cluster=true", tmp_path)
    assert "topsecret" not in str(raised.value)
    with pytest.raises(ValueError, match="password may not hold a comma") as raised:
        online_store_config("redis://:a%2Cb@host:6379", tmp_path)
    assert "a,b" not in str(raised.value) and "a%2Cb" not in str(raised.value)
    assert shown_url("rediss://vicap:s3cret@cache.internal:6380/1") == "rediss://cache.internal:6380/1"


def test_apply_and_materialize_before_build_name_the_missing_table(data_dir):
    runner = CliRunner()
    for args in (["features", "apply"], ["features", "materialize", "2024-03-01", "2024-03-08"]):
        result = runner.invoke(app, args)
        said = "".join(result.output.split())  # rich wraps long paths mid-word
        assert result.exit_code == 2, args
        assert "/features/vi_event_features.parquet:nosuchfeaturetable(run`vicapfeaturesbuild`first)" in said


def test_online_names_a_decision_the_store_does_not_hold(applied, monkeypatch):
    monkeypatch.setenv("VICAP_DATA_DIR", str(applied.root))
    runner = CliRunner()
    result = runner.invoke(app, ["features", "online", "999999-1", "--offset", "2"])
    said = "".join(result.output.split())
    assert result.exit_code == 1 and "noonlinefeaturesfor999999-1at2saftertherelease" in said
    event_id = pq.read_table(applied.features / "vi_event_features.parquet")["event_id"][0].as_py()
    result = runner.invoke(app, ["features", "online", event_id, "--offset", "2"])
    assert result.exit_code == 0 and "post_offset_s" in result.output
