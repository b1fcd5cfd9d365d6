"""`croupier jackpot ...`: the JackpotService commands of the ops CLI.

    create      CreateJackpot --jackpot-id ID --currency CODE [--network T1,T2] --tier JSON...
    list        ListPools [--region R] [--game G] [--jackpot ID] (every page)
    show        GetPool --pool ID
    update      UpdatePool --pool ID --tier JSON [--expected-version N] [--reason TEXT]
    contribute  Contribute --jackpot ID --player P --round R --bet DECIMAL --currency CODE
    eligible    CheckEligibility --jackpot ID --bet DECIMAL --currency CODE [--game G]
    trigger     Trigger --pool ID --player P [--round R] [--reason TEXT]
    payout      Payout --win UUID (start or retry; prints the win)
    win         GetWin --win UUID
    wins        ListWins [--pool ID] [--player P] [--state requested|credited|failed]
    watch       WatchPools [--pool ID...] [--count N] (one JSON line per update)
    verify      recompute an ended cycle's draws and must-drop point from its revealed seed
                (exit status 3 when it does not verify, as `audit verify`)
    reconcile   Reconcile [--pool ID]: seed + carried + contributions - wins = amount
    audit show | audit verify   the tenant's hash-chained audit log, and its verification

A tier is proto JSON of croupier.jackpot.v1.TierConfig with minor units, e.g.
`{"tier": "mini", "kind": "POOL_KIND_PROGRESSIVE", "seed_minor_units": 1000,
"contribution_rate_ppm": 5000, "trigger": "TRIGGER_KIND_RANDOM", "hit_probability_ppb": 1000000}`.
Bets are decimal strings converted exactly to minor units (server.money.parse_decimal).
Write commands take `--idempotency-key` (a uuid4 when absent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from google.protobuf import json_format
from google.protobuf.message import Message

from client.errors import from_rpc_error
from server.jackpot import audit, fairness
from server.money import parse_decimal

Run = Callable[[JackpotServiceStub, argparse.Namespace], Message | dict[str, Any]]

_STATES = {
    "requested": pb.PAYOUT_STATE_REQUESTED,
    "credited": pb.PAYOUT_STATE_CREDITED,
    "failed": pb.PAYOUT_STATE_FAILED,
}


def _money(text: str, currency: str, field: str) -> money_pb2.Money:
    m = parse_decimal(text, currency.upper(), field=field)
    return money_pb2.Money(minor_units=m.minor_units, currency=m.currency)


def _tier(text: str) -> pb.TierConfig:
    """argparse type of `--tier JSON` (proto JSON of TierConfig)."""
    try:
        return json_format.Parse(text, pb.TierConfig())
    except json_format.ParseError as exc:
        raise argparse.ArgumentTypeError(f"bad --tier JSON: {exc}") from exc


def _rate(text: str) -> tuple[str, int]:
    """argparse type of `--conversion CODE=MICRO`."""
    code, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected CODE=MICRO, got {text!r}")
    return code.upper(), int(value)


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _key(args: argparse.Namespace) -> str:
    key: str = args.idempotency_key or str(uuid.uuid4())
    args.idempotency_key = key
    return key


# -- the commands --------------------------------------------------------------------------------


def _create(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.CreateJackpot(
        pb.CreateJackpotRequest(
            tenant_id=a.tenant,
            idempotency_key=_key(a),
            jackpot_id=a.jackpot_id,
            display_name=a.name,
            currency=a.currency.upper(),
            scope=pb.JACKPOT_SCOPE_NETWORK if a.network else pb.JACKPOT_SCOPE_LOCAL,
            tenant_ids=_csv(a.network or ""),
            region=a.region,
            game_ids=_csv(a.games or ""),
            tiers=a.tier,
            conversion_rates_micro=dict(a.conversion),
        ),
        timeout=a.timeout,
    )


def pools(
    stub: JackpotServiceStub, tenant: str, timeout: float, **filters: str
) -> Iterator[pb.Pool]:
    """Every pool the tenant sees (all pages)."""
    token = ""
    while True:
        page = stub.ListPools(
            pb.ListPoolsRequest(tenant_id=tenant, page_size=500, page_token=token, **filters),
            timeout=timeout,
        )
        yield from page.pools
        token = page.next_page_token
        if not token:
            return


def _list(stub: JackpotServiceStub, a: argparse.Namespace) -> dict[str, Any]:
    found = pools(stub, a.tenant, a.timeout, region=a.region, game_id=a.game, jackpot_id=a.jackpot)
    return {"pools": [_dict(p) for p in found]}


def _show(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.GetPool(pb.GetPoolRequest(tenant_id=a.tenant, pool_id=a.pool), timeout=a.timeout)


def _update(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.UpdatePool(
        pb.UpdatePoolRequest(
            tenant_id=a.tenant,
            idempotency_key=_key(a),
            pool_id=a.pool,
            config=a.tier,
            expected_config_version=a.expected_version,
            reason=a.reason,
        ),
        timeout=a.timeout,
    )


def _contribute(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    req = pb.ContributeRequest(
        tenant_id=a.tenant,
        idempotency_key=_key(a),
        jackpot_id=a.jackpot,
        player_id=a.player,
        game_id=a.game,
        round_id=a.round or f"r-{uuid.uuid4().hex[:12]}",
        bet=_money(a.bet, a.currency, "bet"),
    )
    if a.contribution is not None:
        req.contribution.CopyFrom(_money(a.contribution, a.currency, "contribution"))
    return stub.Contribute(req, timeout=a.timeout)


def _eligible(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.CheckEligibility(
        pb.CheckEligibilityRequest(
            tenant_id=a.tenant,
            jackpot_id=a.jackpot,
            game_id=a.game,
            bet=_money(a.bet, a.currency, "bet"),
        ),
        timeout=a.timeout,
    )


def _trigger(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.Trigger(
        pb.TriggerRequest(
            tenant_id=a.tenant,
            idempotency_key=_key(a),
            pool_id=a.pool,
            reason=a.reason,
            selector=pb.TriggerSelector(player_id=a.player, round_id=a.round, game_id=a.game),
        ),
        timeout=a.timeout,
    )


def _payout(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.Payout(pb.PayoutRequest(tenant_id=a.tenant, win_id=a.win), timeout=a.timeout)


def _win(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.GetWin(pb.GetWinRequest(tenant_id=a.tenant, win_id=a.win), timeout=a.timeout)


def _wins(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.ListWins(
        pb.ListWinsRequest(
            tenant_id=a.tenant,
            pool_id=a.pool,
            player_id=a.player,
            payout_state=_STATES.get(a.state or "", pb.PAYOUT_STATE_UNSPECIFIED),
            page_size=a.page_size,
        ),
        timeout=a.timeout,
    )


def _watch(stub: JackpotServiceStub, a: argparse.Namespace) -> dict[str, Any]:
    stream = stub.WatchPools(
        pb.WatchPoolsRequest(tenant_id=a.tenant, pool_ids=a.pool, min_interval_ms=a.interval_ms)
    )
    seen = 0
    try:
        for update in stream:
            print(json.dumps(_dict(update.pool)), flush=True)
            seen += 1
            if a.count and seen >= a.count:
                break
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]
    return {"updates": seen}


def cycle_proof(
    stub: JackpotServiceStub, tenant: str, pool_id: str, cycle: int, timeout: float = 10.0
) -> fairness.CycleProof:
    """Fetch an ended cycle's revealed seed and every draw of it (all pages)."""
    c = stub.GetCycle(
        pb.GetCycleRequest(tenant_id=tenant, pool_id=pool_id, cycle=cycle), timeout=timeout
    ).cycle
    if not c.server_seed:
        raise SystemExit(f"cycle {cycle} of {pool_id} has not ended: its seed is still secret")
    draws: list[fairness.DrawRecord] = []
    token = ""
    while True:
        page = stub.ListContributions(
            pb.ListContributionsRequest(
                tenant_id=tenant, pool_id=pool_id, cycle=cycle, page_size=5000, page_token=token
            ),
            timeout=timeout,
        )
        draws += [
            fairness.DrawRecord(d.round_id, d.salt, d.hit_probability_ppb, d.hit)
            for d in page.contributions
        ]
        token = page.next_page_token
        if not token:
            break
    proof = fairness.CycleProof(
        pool_id=pool_id,
        cycle=cycle,
        seed_commitment=bytes.fromhex(c.seed_commitment),
        server_seed=bytes.fromhex(c.server_seed),
        draws=draws,
    )
    if c.HasField("must_drop_point"):
        proof = _replace(
            proof,
            must_drop_range=(c.must_drop_min_minor_units, c.must_drop_max_minor_units),
            must_drop_point=c.must_drop_point.minor_units,
        )
    if c.HasField("drop_time"):
        offset = (c.drop_time.seconds - c.start_time.seconds) * 1_000_000 + (
            c.drop_time.nanos - c.start_time.nanos
        ) // 1000
        proof = _replace(
            proof,
            deadline_window=(c.deadline_min_seconds, c.deadline_max_seconds),
            drop_offset_micros=offset,
        )
    return proof


def _replace(proof: fairness.CycleProof, **changes: Any) -> fairness.CycleProof:
    return dataclasses.replace(proof, **changes)


VERIFY_FAILED_EXIT = 3  # the exit status of a failed verification, as `croupier reconcile`


def _verified_or_exit(body: dict[str, Any]) -> dict[str, Any]:
    """`body` when `body["verified"]`; otherwise print it and exit with VERIFY_FAILED_EXIT, so
    cron jobs and alerting see the failure in the exit status."""
    if not body["verified"]:
        print(json.dumps(body, indent=2))
        raise SystemExit(VERIFY_FAILED_EXIT)
    return body


def _verify(stub: JackpotServiceStub, a: argparse.Namespace) -> dict[str, Any]:
    proof = cycle_proof(stub, a.tenant, a.pool, a.cycle, a.timeout)
    problems = fairness.verify_cycle(proof)
    return _verified_or_exit(
        {
            "pool_id": a.pool,
            "cycle": a.cycle,
            "verified": not problems,
            "draws": len(proof.draws),
            "must_drop_point": proof.must_drop_point,
            "problems": problems,
        }
    )


def _reconcile(stub: JackpotServiceStub, a: argparse.Namespace) -> Message:
    return stub.Reconcile(
        pb.ReconcileRequest(tenant_id=a.tenant, pool_id=a.pool), timeout=a.timeout
    )


def audit_records(
    stub: JackpotServiceStub, tenant: str, timeout: float = 10.0
) -> list[audit.ChainRecord]:
    """The tenant's whole audit chain (all pages), as received."""
    out: list[audit.ChainRecord] = []
    token = ""
    while True:
        page = stub.GetAuditLog(
            pb.GetAuditLogRequest(tenant_id=tenant, page_size=5000, page_token=token),
            timeout=timeout,
        )
        out += [
            audit.ChainRecord(
                r.tenant_id,
                r.sequence,
                r.time_unix_micros,
                r.action,
                r.subject,
                r.payload_json,
                bytes.fromhex(r.prev_hash),
                bytes.fromhex(r.hash),
            )
            for r in page.records
        ]
        token = page.next_page_token
        if not token:
            return out


def _audit_show(stub: JackpotServiceStub, a: argparse.Namespace) -> dict[str, Any]:
    records = audit_records(stub, a.tenant, a.timeout)
    return {
        "records": [
            {
                "sequence": r.sequence,
                "action": r.action,
                "subject": r.subject,
                "payload": json.loads(r.payload_json),
                "hash": r.hash.hex(),
            }
            for r in records
        ]
    }


def _audit_verify(stub: JackpotServiceStub, a: argparse.Namespace) -> dict[str, Any]:
    check = audit.verify_chain(audit_records(stub, a.tenant, a.timeout))
    return _verified_or_exit(
        {
            "verified": check.ok,
            "records": check.records,
            "bad_sequence": check.bad_sequence,
            "problem": check.problem,
        }
    )


# -- wiring -------------------------------------------------------------------------------------


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _runner(run: Run) -> Callable[[argparse.Namespace], Message | dict[str, Any]]:
    def call(args: argparse.Namespace) -> Message | dict[str, Any]:
        with grpc.insecure_channel(args.target) as channel:
            try:
                return run(JackpotServiceStub(channel), args)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from exc

    return call


def register(groups: Any) -> None:
    """Add the `jackpot` group and its commands to the `croupier` subparsers."""
    from client.cli import connection_options

    parent = connection_options()
    jp = groups.add_parser("jackpot", help="JackpotService: pools, contributions, wins, audit")
    commands = jp.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(sub: Any, name: str, run: Run, text: str, write: bool = False) -> Any:
        p = sub.add_parser(name, parents=[parent], help=text, description=text)
        p.set_defaults(run=_runner(run))
        if write:
            p.add_argument("--idempotency-key", default="", help="default: a new uuid4")
        return p

    p = command(commands, "create", _create, "create a jackpot with its tiers", write=True)
    p.add_argument("--jackpot-id", required=True)
    p.add_argument("--currency", required=True)
    p.add_argument("--name", default="", help="display name")
    p.add_argument("--network", default=None, help="comma-separated tenants (network scope)")
    p.add_argument("--region", default="")
    p.add_argument("--games", default=None, help="comma-separated game ids (default: all)")
    p.add_argument("--tier", type=_tier, action="append", required=True, help="TierConfig JSON")
    p.add_argument(
        "--conversion",
        type=_rate,
        action="append",
        default=[],
        help="CODE=MICRO: jackpot minor units per 10^6 minor units of CODE (e.g. USD=920000)",
    )

    p = command(commands, "list", _list, "list the pools the tenant sees")
    p.add_argument("--region", default="")
    p.add_argument("--game", default="")
    p.add_argument("--jackpot", default="")

    p = command(commands, "show", _show, "one pool: amount, cycle, seed commitment")
    p.add_argument("--pool", required=True)

    p = command(commands, "update", _update, "replace a pool's tier configuration", write=True)
    p.add_argument("--pool", required=True)
    p.add_argument("--tier", type=_tier, required=True, help="TierConfig JSON")
    p.add_argument("--expected-version", type=int, default=0)
    p.add_argument("--reason", default="")

    p = command(commands, "contribute", _contribute, "contribute a bet", write=True)
    p.add_argument("--jackpot", required=True)
    p.add_argument("--player", required=True)
    p.add_argument("--round", default="", help="round id (default: a new one)")
    p.add_argument("--game", default="")
    p.add_argument("--bet", required=True, help="decimal amount, e.g. 2.00")
    p.add_argument("--currency", required=True)
    p.add_argument("--contribution", default=None, help="caller-computed amount (one tier)")

    p = command(commands, "eligible", _eligible, "whether a bet qualifies per tier")
    p.add_argument("--jackpot", required=True)
    p.add_argument("--game", default="")
    p.add_argument("--bet", required=True)
    p.add_argument("--currency", required=True)

    p = command(commands, "trigger", _trigger, "report a hit (EXTERNAL pools)", write=True)
    p.add_argument("--pool", required=True)
    p.add_argument("--player", required=True)
    p.add_argument("--round", default="")
    p.add_argument("--game", default="")
    p.add_argument("--reason", default="external")

    for name, run, text in (
        ("payout", _payout, "start or retry a win's payout"),
        ("win", _win, "one win and its payout state"),
    ):
        p = command(commands, name, run, text)
        p.add_argument("--win", required=True, help="win id")

    p = command(commands, "wins", _wins, "the tenant's wins, newest first")
    p.add_argument("--pool", default="")
    p.add_argument("--player", default="")
    p.add_argument("--state", choices=sorted(_STATES), default=None)
    p.add_argument("--page-size", type=int, default=50)

    p = command(commands, "watch", _watch, "stream pool updates as JSON lines")
    p.add_argument("--pool", action="append", default=[], help="repeatable; default: all")
    p.add_argument("--count", type=int, default=0, help="stop after N updates (0: never)")
    p.add_argument("--interval-ms", type=int, default=1000)

    p = command(commands, "verify", _verify, "verify an ended cycle from its revealed seed")
    p.add_argument("--pool", required=True)
    p.add_argument("--cycle", type=int, required=True)

    p = command(commands, "reconcile", _reconcile, "reconcile the tenant's pools")
    p.add_argument("--pool", default="")

    a = commands.add_parser("audit", help="the hash-chained audit log")
    audit_commands = a.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    command(audit_commands, "show", _audit_show, "print the tenant's audit records")
    command(audit_commands, "verify", _audit_verify, "check the tenant's hash chain")


if __name__ == "__main__":  # pragma: no cover - `croupier jackpot` is the entry point
    from client.cli import main

    sys.exit(main(["jackpot", *sys.argv[1:]]))
