"""Smoke run of the load test: a few clients for a few seconds against a real `simqa serve`."""

import asyncio

from benchmarks.load import run, running_server
from tests.conftest import SEED_000, SEED_003


def test_load_run_has_no_errors(seeds_index):
    with running_server(seeds_index) as base:
        result = asyncio.run(run(base, clients=4, seconds=3, queries=["head tremor", "wrist twitch"], ids=[SEED_000, SEED_003]))
    assert result["errors"] == 0 and result["requests"] > 10
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
