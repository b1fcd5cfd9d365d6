"""The short chaos drill inside `make test` (the 5-minute one is `make chaos`)."""

from __future__ import annotations

from tests.chaos.harness import Drill


async def test_short_chaos_drill_has_no_anomalies() -> None:
    drill = Drill(seconds=25, players=8, concurrency=8)
    stats = await drill.run()
    print(drill.summary())
    assert set(stats.faults) >= {
        "worker SIGKILL",
        "postgres fast restart",
        "postgres immediate restart",
        "rabbitmq stopped",
    }, stats.faults
    assert stats.operations["SettleBet"] > 50
    assert not stats.anomalies, drill.summary()
