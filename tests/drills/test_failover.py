"""The short failover drill inside `make test` (the full one is `make failover-drill`).

Needs pg_auto_failover (`make ha-packages`, which `make test` and CI run first).
"""

from __future__ import annotations

from tests.drills.failover import FailoverDrill


async def test_failover_drill_loses_no_acknowledged_write() -> None:
    drill = FailoverDrill(seconds=60, players=6, clients=2, kills=2, switchover=True)
    stats = await drill.run()
    print(drill.summary())
    assert not stats.anomalies, drill.summary()
    assert stats.faults == {"node SIGKILL": 2, "planned switchover": 1}, stats.faults
    assert stats.operations["SettleBet"] > 50
    for fault in drill.report.faults:
        assert fault.first_write_after is not None
        assert fault.first_write_after < 30, drill.summary()
