"""The production online store is Redis; this checks the server vicap is configured to use speaks
what Feast's Redis store needs (hashes, key TTLs) and holds data across connections."""

from __future__ import annotations

import uuid

import pytest
import redis

from vicap.settings import get_settings

pytestmark = pytest.mark.redis


def test_redis_holds_feature_hashes_with_ttl(redis_client):
    key = f"vicap-test:{uuid.uuid4().hex}"
    try:
        redis_client.hset(key, mapping={"feature_a": b"\x01\x02", "_ts:vi_event": b"1709596800"})
        redis_client.expire(key, 60)
        with redis.Redis.from_url(get_settings().redis_url) as other_connection:
            assert other_connection.hgetall(key) == {
                b"feature_a": b"\x01\x02",
                b"_ts:vi_event": b"1709596800",
            }
            assert 0 < other_connection.ttl(key) <= 60
        version = tuple(int(x) for x in redis_client.info("server")["redis_version"].split(".")[:2])
        assert version >= (6, 0)
    finally:
        redis_client.delete(key)
