"""The production online store is Redis: vicap's Redis setting must reach the database it names.
Feast connects with its own client from vicap's ``online_store_config``; what that client writes
must land in the server and database of ``VICAP_REDIS_URL`` (a db number included), where vicap's
DecisionReader and a second connection find it."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse

import pytest
import redis
from feast.infra.online_stores.redis import RedisOnlineStore

from feature_repo.store import online_store_config
from vicap.settings import get_settings

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("db", [None, 5])
def test_the_redis_setting_reaches_the_database_it_names(redis_client, tmp_path, db):
    url = urlparse(get_settings().redis_url)
    server = f"redis://{url.hostname}:{url.port or 6379}"
    setting = server + (f"/{db}" if db is not None else "")
    config = online_store_config(setting, tmp_path)
    feast_client = RedisOnlineStore()._get_client(config)  # the connection Feast itself opens
    key = f"vicap-test:{uuid.uuid4().hex}"
    try:
        feast_client.hset(key, mapping={"feature_a": b"\x01\x02"})
        with (
            redis.Redis.from_url(setting) as named,
            redis.Redis.from_url(f"{setting.rsplit('/', 1)[0]}/0") as db0,
        ):
            assert named.hgetall(key) == {b"feature_a": b"\x01\x02"}
            assert bool(db0.exists(key)) == (db in (None, 0))  # nowhere but the named database
    finally:
        feast_client.delete(key)
