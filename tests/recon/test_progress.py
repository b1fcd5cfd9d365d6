"""The export's progress bar: on stderr when asked (a terminal), silent otherwise; rows on
stdout either way."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from datetime import UTC, datetime, timedelta

from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.common.v1 import money_pb2

from client.export_cli import write_rounds

START = datetime(2026, 3, 1, tzinfo=UTC)


def _pages() -> list[pb.ExportRoundsResponse]:
    pages = []
    for p in range(3):
        page = pb.ExportRoundsResponse()
        for i in range(2):
            r = page.rounds.add(round_id=f"r{p}{i}", player_id="p", transactions=1)
            r.bets.CopyFrom(money_pb2.Money(minor_units=1005, currency="EUR"))
            r.wins.CopyFrom(money_pb2.Money(minor_units=0, currency="EUR"))
            r.refunds.CopyFrom(money_pb2.Money(minor_units=0, currency="EUR"))
            r.started_at.FromDatetime(START + timedelta(hours=p * 8 + i))
            r.ended_at.FromDatetime(START + timedelta(hours=p * 8 + i))
        pages.append(page)
    return pages


def test_progress_goes_to_stderr_only_when_asked() -> None:
    for progress in (True, False):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stderr(err):
            count = write_rounds(
                _pages(), "csv", out, START, START + timedelta(days=1), progress=progress
            )
        assert count == 6
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("round_id,") and len(lines) == 7
        assert ",10.05,0.00,0.00,10.05," in lines[1]  # exact decimals: bets, wins, refunds, net
        if progress:
            assert "6 rows" in err.getvalue() and "100%" in err.getvalue()
        else:
            assert err.getvalue() == ""
