"""The Feast store as vicap opens it: ``feature_store.yaml`` (or, for a Redis online store, its
twin ``feature_store.redis.yaml``) read as Feast reads it, with the registry and the embedded
online store under the data root of the settings and the Redis connection from
``VICAP_ONLINE_STORE``. The YAML files are the one description of the store; the plain ``feast``
command in ``feature_repo/`` reads the same files for the default data root."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pandas as pd
import yaml
from feast import FeatureStore, RepoConfig
from feast.data_source import PushSource
from feast.infra.online_stores.helpers import _mmh3, _redis_key, get_online_store_from_config
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feature_repo.build import FeatureRows, decision_table, event_table, sequence_table
from feature_repo.definitions import DECISION_PUSH, EVENT_PUSH, REPO_DIR, SEQUENCE_PUSH, feast_objects

FEATURE_STORE_YAML = REPO_DIR / "feature_store.yaml"
REDIS_YAML = REPO_DIR / "feature_store.redis.yaml"


def shown_url(online_store: str) -> str:
    """The online-store setting as it may be printed: without user and password."""
    url = urlparse(online_store)
    if not url.hostname:
        return online_store if online_store == "sqlite" else url.scheme + "://"
    port = f":{url.port}" if url.port else ""
    return url._replace(netloc=f"{url.hostname}{port}").geturl()


def _yaml(path: Path) -> dict:
    """A feature_store YAML as Feast's own loader reads it (environment variables expanded)."""
    return yaml.safe_load(os.path.expandvars(path.read_text(encoding="utf-8")))


def online_store_config(
    online_store: str, feast_dir: Path
) -> SqliteOnlineStoreConfig | RedisOnlineStoreConfig:
    """The YAML's online store: 'sqlite' (embedded, under ``feast_dir``) or a Redis URL in Feast's
    connection-string terms: ``redis://[user:password@]host:port[/db]``, ``rediss://`` for TLS,
    ``?cluster=true`` for a Redis Cluster (its seed node). The password never reaches an error
    message."""
    if online_store == "sqlite":
        return SqliteOnlineStoreConfig(
            **_yaml(FEATURE_STORE_YAML)["online_store"] | {"path": str(feast_dir / "online.db")}
        )
    url = urlparse(online_store)
    shown = shown_url(online_store)
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ValueError(f"VICAP_ONLINE_STORE={shown!r}: expected 'sqlite' or redis[s]://host:port")
    query = parse_qs(url.query)
    cluster = query.get("cluster", ["false"])[0].lower() in ("1", "true", "yes")
    db = url.path.strip("/")
    if cluster and db not in ("", "0"):
        raise ValueError(f"VICAP_ONLINE_STORE={shown!r}: a Redis Cluster has no database number")
    params = {"db": db or None, "username": url.username or None, "password": url.password or None}
    params["ssl"] = "true" if url.scheme == "rediss" else None
    if cluster:
        params |= {"db": None, "skip_full_coverage_check": "true"}
    for key, value in params.items():
        if value is not None and "," in unquote(value):  # Feast splits its options at commas
            raise ValueError(f"VICAP_ONLINE_STORE={shown!r}: {key} may not hold a comma")
    options = [f"{k}={unquote(v)}" for k, v in params.items() if v is not None]
    return RedisOnlineStoreConfig(
        **_yaml(REDIS_YAML)["online_store"]
        | {
            "connection_string": ",".join([f"{url.hostname}:{url.port or 6379}", *options]),
            "redis_type": "redis_cluster" if cluster else "redis",
        }
    )


def registry_path(feast_dir: Path) -> Path:
    return feast_dir / "registry.db"


def repo_config(feast_dir: Path, online_store: str = "sqlite", project: str | None = None) -> RepoConfig:
    """``feature_store.yaml`` (its Redis twin for a Redis URL) with the registry and the embedded
    online store under ``feast_dir``; ``project`` renames the project (a test's own keys in Redis)."""
    raw = _yaml(FEATURE_STORE_YAML if online_store == "sqlite" else REDIS_YAML)
    registry = raw["registry"] if isinstance(raw["registry"], dict) else {"path": raw["registry"]}
    raw["registry"] = registry | {"path": str(registry_path(feast_dir))}
    raw["online_store"] = online_store_config(online_store, feast_dir)
    if project:
        raw["project"] = project
    return RepoConfig(**raw, repo_path=REPO_DIR)


def open_store(feast_dir: Path, online_store: str = "sqlite", project: str | None = None) -> FeatureStore:
    feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(feast_dir, online_store, project))


def apply(store: FeatureStore, features_dir: Path) -> list[str]:
    """Register every object over ``features_dir`` (what ``feast apply`` does); returns their names."""
    objects = feast_objects(features_dir)
    store.apply(list(objects.values()))
    return list(objects)


def materialize(store: FeatureStore, start: dt.datetime, end: dt.datetime) -> None:
    """Load the offline rows stamped in [start, end] into the online store (latest per key)."""
    store.materialize(start_date=start, end_date=end)


class OnlinePusher:
    """What ``store.push(name, df, to=PushMode.ONLINE)`` does for the three push sources, with the
    feature views behind each resolved once: Feast's ``push`` rebuilds every view of the registry
    from its protos on each call (typeguard over 134 fields: about 35 ms a push, three pushes a
    decision). The rows go through the provider's own ``ingest_df``, as ``push`` sends them."""

    def __init__(self, store: FeatureStore) -> None:
        self.provider = store._get_provider()  # what push() writes through; no public handle
        views = store.list_feature_views()
        self.views = {
            name: [
                v for v in views if isinstance(v.stream_source, PushSource) and v.stream_source.name == name
            ]
            for name in (EVENT_PUSH, DECISION_PUSH, SEQUENCE_PUSH)
        }

    def push(self, rows: FeatureRows) -> None:
        """A VI's live rows: its decisions (and sequences), and with the first decision the
        event-level row."""
        if 0 in rows.decisions:
            self._write(EVENT_PUSH, event_table([rows]).to_pandas())
        self._write(DECISION_PUSH, decision_table([rows]).to_pandas())
        self._write(SEQUENCE_PUSH, sequence_table([rows]).to_pandas())

    def _write(self, name: str, df: pd.DataFrame) -> None:
        for view in self.views[name]:
            self.provider.ingest_df(view, df)


def push_online(store: FeatureStore, rows: FeatureRows) -> None:
    """Push a VI's live rows to the online store (see :class:`OnlinePusher`, which the live
    executor keeps for the session)."""
    OnlinePusher(store).push(rows)


def decision_entity(event_id: str, offset_s: int, stock_code: str) -> dict:
    return {"event_id": event_id, "decision_offset_s": offset_s, "stock_code": stock_code}


def historical(store: FeatureStore, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
    """Point-in-time rows for ``entity_df`` (event_id, decision_offset_s, stock_code, event_timestamp)."""
    keys = ["event_id", "decision_offset_s", "stock_code", "event_timestamp"]
    entities = entity_df[keys].drop_duplicates(["event_id", "decision_offset_s"])
    return store.get_historical_features(
        entity_df=entities, features=store.get_feature_service(service)
    ).to_df()


class DecisionReader:
    """One decision's features of a feature service, read straight from the online store.

    ``get_online_features`` resolves the service against the registry, builds a response proto and
    converts every value on each call (milliseconds for the 134 features here; ``make bench``). The
    model service needs the same values with less: views, entity-key layout and (for Redis) the
    hashed field names are resolved once; a read is one ``online_read`` per view on SQLite, or one
    pipelined round trip of HMGETs on Redis, in the key layout of Feast's Redis store. A test holds
    it equal to ``get_online_features`` on both stores.
    """

    def __init__(self, store: FeatureStore, service: str) -> None:
        self.config = store.config
        self.online = get_online_store_from_config(store.config.online_store)
        projections = store.get_feature_service(service).feature_view_projections
        views = {fv.name: fv for fv in store.list_feature_views()}
        self.views = [(views[p.name], [f.name for f in p.features]) for p in projections]
        self.join_keys = [view.join_keys for view, _ in self.views]  # a type-checked property: once
        self.redis = None
        if isinstance(store.config.online_store, RedisOnlineStoreConfig):
            self.redis = self.online._get_client(store.config.online_store)  # Feast's own connection
            self.fields = [[_mmh3(f"{view.name}:{n}") for n in names] for view, names in self.views]

    def read(self, event_id: str, offset_s: int, stock_code: str) -> dict[str, object]:
        values = {
            "event_id": ValueProto(string_val=event_id),
            "decision_offset_s": ValueProto(int64_val=offset_s),
            "stock_code": ValueProto(string_val=stock_code),
        }
        keys = [EntityKeyProto(join_keys=jk, entity_values=[values[k] for k in jk]) for jk in self.join_keys]
        if self.redis is not None:
            return self._read_redis(keys)
        out: dict[str, object] = {}
        for (view, names), key in zip(self.views, keys, strict=True):
            found = self.online.online_read(self.config, view, [key], names)[0][1] or {}
            out.update((name, _python(found.get(name))) for name in names)
        return out

    def _read_redis(self, keys: list[EntityKeyProto]) -> dict[str, object]:
        version = self.config.entity_key_serialization_version
        with self.redis.pipeline(transaction=False) as pipe:
            for key, fields in zip(keys, self.fields, strict=True):
                pipe.hmget(_redis_key(self.config.project, key, version), fields)
            replies = pipe.execute()
        out: dict[str, object] = {}
        for (_, names), raw in zip(self.views, replies, strict=True):
            out.update(
                (n, _python(ValueProto.FromString(r)) if r else None) for n, r in zip(names, raw, strict=True)
            )
        return out


def _python(value: ValueProto | None) -> object:
    kind = value.WhichOneof("val") if value is not None else None
    if kind is None:
        return None
    if kind.endswith("_list_val"):
        return list(getattr(value, kind).val)
    return getattr(value, kind)
