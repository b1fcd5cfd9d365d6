"""Property test (issue 8 item 2): random sequences of wallet operations, with replays of
earlier requests, checked call by call against a simple in-memory model of the ledger,
including daily deposit, loss and wager limits (a new or lower limit applies at once, a raise
waits for the 24 h cooling-off, so the model leaves the limit as it was)."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import App
from server.error_info import reason_of, status_of
from tests.rpc import eur

PLAYERS = ("p0", "p1")
BETS = ("b0", "b1", "b2", "b3")
KEYS = tuple(f"k{i}" for i in range(12))
KINDS = {
    "deposit": pb.LIMIT_KIND_DEPOSIT,
    "loss": pb.LIMIT_KIND_LOSS,
    "wager": pb.LIMIT_KIND_WAGER,
}


@dataclass
class Hold:
    player: str
    amount: int
    state: str  # open | settled | cancelled | tombstone


@dataclass
class KeyUse:
    method: str
    kind: str | None  # the transaction kind it produced, None if refused
    player: str
    amount: int = 0
    rolled_back: bool = False
    deposit: bool = False


@dataclass
class Model:
    available: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    keys: dict[str, KeyUse | None] = field(default_factory=dict)  # None = tombstone
    limits: dict[tuple[str, str], int] = field(default_factory=dict)  # (player, kind) -> day limit
    stakes: dict[str, int] = field(default_factory=dict)  # today's usage per player
    wins: dict[str, int] = field(default_factory=dict)
    deposits: dict[str, int] = field(default_factory=dict)

    def limit_refusal(self, p: str, amount: int, deposit: bool = False) -> str | None:
        """The reason a stake (or deposit) of `amount` passes one of p's daily limits."""
        stakes, wins = self.stakes.get(p, 0), self.wins.get(p, 0)
        if deposit:
            lim = self.limits.get((p, "deposit"))
            if lim is not None and self.deposits.get(p, 0) + amount > lim:
                return "DEPOSIT_LIMIT_EXCEEDED"
            return None
        lim = self.limits.get((p, "loss"))
        if lim is not None and stakes - wins + amount > lim:
            return "LOSS_LIMIT_EXCEEDED"
        lim = self.limits.get((p, "wager"))
        if lim is not None and stakes + amount > lim:
            return "WAGER_LIMIT_EXCEEDED"
        return None

    def count(self, usage: dict[str, int], p: str, amount: int) -> None:
        usage[p] = usage.get(p, 0) + amount

    def known(self, p: str) -> bool:
        return p in self.available

    def apply(self, op: tuple[Any, ...], key: str) -> str:
        """The expected outcome ("OK", "OK:<outcome>" or a reason), updating the model."""
        name, p = op[0], op[1]
        if name == "rollback" and op[2] == key:
            return "TARGET_IS_SELF"  # INVALID_ARGUMENT, checked before anything else
        if key in self.keys and self.keys[key] is None:
            return "TRANSACTION_ROLLED_BACK"
        if name == "limit":
            kind, amount = op[2], op[3]
            self.keys[key] = KeyUse("SetLimit", None, p)  # no debit or credit to reverse
            if not self.known(p):
                return "PLAYER_NOT_FOUND"
            current = self.limits.get((p, kind))
            if amount is not None and (current is None or amount <= current):
                self.limits[p, kind] = amount
            return "OK"
        if name == "deposit":
            if self.known(p):
                refusal = self.limit_refusal(p, op[2], deposit=True)
                if refusal:
                    self.keys[key] = KeyUse("Credit", None, p, op[2])
                    return refusal
            self.available.setdefault(p, 0)
            self.held.setdefault(p, 0)
            self.available[p] += op[2]
            self.count(self.deposits, p, op[2])
            self.keys[key] = KeyUse("Credit", "credit", p, op[2], deposit=True)
            return "OK"
        if name == "credit":
            self.available.setdefault(p, 0)
            self.held.setdefault(p, 0)
            self.available[p] += op[2]
            self.keys[key] = KeyUse("Credit", "credit", p, op[2])
            return "OK"
        if name in ("debit", "authorize"):
            method = "Debit" if name == "debit" else "AuthorizeBet"
            amount = op[2] if name == "debit" else op[3]
            outcome = self._bet(p, amount, op[2] if name == "authorize" else None)
            if outcome == "OK":
                self.available[p] -= amount
                self.count(self.stakes, p, amount)
                if name == "authorize":
                    self.held[p] += amount
                    self.holds[op[2]] = Hold(p, amount, "open")
            self.keys[key] = KeyUse(method, name if outcome == "OK" else None, p, amount)
            return outcome
        if name == "settle":
            bet, capture, win = op[2], op[3], op[4]
            h = self.holds.get(bet)
            self.keys[key] = KeyUse("SettleBet", None, p)
            if h is None or h.player != p:
                return "BET_NOT_FOUND"
            if h.state != "open":
                return "HOLD_NOT_OPEN"
            captured = h.amount if capture is None else capture
            if captured > h.amount:
                return "CAPTURE_EXCEEDS_HOLD"
            self.held[p] -= h.amount
            self.available[p] += h.amount - captured + win
            self.count(self.stakes, p, captured - h.amount)
            self.count(self.wins, p, win)
            h.state = "settled"
            self.keys[key] = KeyUse("SettleBet", "settle", p)
            return "OK"
        if name == "cancel":
            bet = op[2]
            h = self.holds.get(bet)
            self.keys[key] = KeyUse("CancelBet", "cancel", p)
            if h is None:
                self.holds[bet] = Hold(p, 0, "tombstone")
                return "OK"
            if h.player != p:
                self.keys[key] = KeyUse("CancelBet", None, p)
                return "BET_NOT_FOUND"
            if h.state != "open":
                self.keys[key] = KeyUse("CancelBet", None, p)
                return "HOLD_NOT_OPEN"
            self.held[p] -= h.amount
            self.available[p] += h.amount
            self.count(self.stakes, p, -h.amount)
            h.state = "cancelled"
            return "OK"
        if name == "rollback":
            return self._rollback(p, op[2], key)
        raise AssertionError(name)

    def _bet(self, p: str, amount: int, bet: str | None) -> str:
        if not self.known(p):
            return "PLAYER_NOT_FOUND"
        if bet is not None and bet in self.holds:
            return "BET_CANCELLED" if self.holds[bet].state == "tombstone" else "BET_ALREADY_EXISTS"
        if self.available[p] < amount:
            return "INSUFFICIENT_FUNDS"
        return self.limit_refusal(p, amount) or "OK"

    def _rollback(self, p: str, target: str, key: str) -> str:
        use = self.keys.get(target, "unknown")
        refused = KeyUse("RollbackTransaction", None, p)
        if use == "unknown":
            self.keys[target] = None
            self.keys[key] = KeyUse("RollbackTransaction", "rollback", p)
            return "OK:TOMBSTONED"
        if use is None:
            self.keys[key] = refused
            return "TRANSACTION_ALREADY_ROLLED_BACK"
        assert isinstance(use, KeyUse)
        if use.kind is None:
            self.keys[key] = refused
            if use.method not in ("Debit", "Credit"):
                return "TRANSACTION_NOT_REVERSIBLE"
            self.keys[key] = KeyUse("RollbackTransaction", "rollback", p)
            return "OK:NOTHING_TO_REVERSE"
        self.keys[key] = refused
        if use.player != p:
            return "TRANSACTION_NOT_FOUND"
        if use.kind not in ("debit", "credit"):
            return "TRANSACTION_NOT_REVERSIBLE"
        if use.rolled_back:
            return "TRANSACTION_ALREADY_ROLLED_BACK"
        delta = use.amount if use.kind == "debit" else -use.amount
        if self.available[p] + delta < 0:
            return "INSUFFICIENT_FUNDS"
        self.available[p] += delta
        if use.kind == "debit":
            self.count(self.stakes, p, -use.amount)
        elif use.deposit:
            self.count(self.deposits, p, -use.amount)
        use.rolled_back = True
        self.keys[key] = KeyUse("RollbackTransaction", "rollback", p)
        return "OK:REVERSED"


amounts = st.integers(min_value=1, max_value=500)
ops = st.one_of(
    st.tuples(st.just("credit"), st.sampled_from(PLAYERS), amounts),
    st.tuples(st.just("debit"), st.sampled_from(PLAYERS), amounts),
    st.tuples(st.just("authorize"), st.sampled_from(PLAYERS), st.sampled_from(BETS), amounts),
    st.tuples(
        st.just("settle"),
        st.sampled_from(PLAYERS),
        st.sampled_from(BETS),
        st.one_of(st.none(), st.integers(0, 500)),
        st.integers(0, 1000),
    ),
    st.tuples(st.just("cancel"), st.sampled_from(PLAYERS), st.sampled_from(BETS)),
    st.tuples(st.just("rollback"), st.sampled_from(PLAYERS), st.sampled_from(KEYS)),
    st.tuples(st.just("deposit"), st.sampled_from(PLAYERS), amounts),
    st.tuples(
        st.just("limit"),
        st.sampled_from(PLAYERS),
        st.sampled_from(("deposit", "loss", "wager")),
        st.one_of(st.none(), st.integers(1, 1000)),  # None: a removal (pending)
    ),
)
# each step: an operation under a fresh key, a named key (so rollbacks can target it), or a
# replay of an earlier step
steps = st.lists(
    st.one_of(
        st.tuples(st.just("new"), ops, st.none()),
        st.tuples(st.just("named"), ops, st.sampled_from(KEYS)),
        st.tuples(st.just("replay"), st.none(), st.integers(0, 1000)),
    ),
    min_size=1,
    max_size=30,
)


def _request(tenant: str, op: tuple[Any, ...], key: str) -> tuple[str, Any]:
    name, p = op[0], op[1]
    base = {"tenant_id": tenant, "player_id": p, "idempotency_key": key}
    if name == "credit":
        return "Credit", pb.CreditRequest(**base, amount=eur(op[2]))
    if name == "deposit":
        return "Credit", pb.CreditRequest(
            **base, amount=eur(op[2]), reason=pb.CREDIT_REASON_DEPOSIT
        )
    if name == "limit":
        return "SetLimit", pb.SetLimitRequest(
            **base,
            kind=KINDS[op[2]],
            window=pb.LIMIT_WINDOW_DAY,
            amount=eur(0 if op[3] is None else op[3]),
            remove=op[3] is None,
        )
    if name == "debit":
        return "Debit", pb.DebitRequest(**base, amount=eur(op[2]))
    if name == "authorize":
        return "AuthorizeBet", pb.AuthorizeBetRequest(**base, bet_id=op[2], amount=eur(op[3]))
    if name == "settle":
        req = pb.SettleBetRequest(**base, bet_id=op[2], win=eur(op[4]))
        if op[3] is not None:
            req.capture.CopyFrom(eur(op[3]))
        return "SettleBet", req
    if name == "cancel":
        return "CancelBet", pb.CancelBetRequest(**base, bet_id=op[2])
    return "RollbackTransaction", pb.RollbackTransactionRequest(
        **base, target_idempotency_key=op[2]
    )


def _call(stub: WalletServiceStub, method: str, req: Any) -> tuple[str, bytes]:
    try:
        resp = getattr(stub, method)(req, timeout=10)
    except grpc.RpcError as exc:
        status = status_of(exc)
        assert status is not None, exc
        return reason_of(status), status.SerializeToString()
    if method == "RollbackTransaction":
        outcome = pb.RollbackOutcome.Name(resp.outcome).removeprefix("ROLLBACK_OUTCOME_")
        return f"OK:{outcome}", resp.SerializeToString()
    return "OK", resp.SerializeToString()


def _run(port: int) -> int:
    examples = 0

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=list(HealthCheck),
    )
    @given(steps)
    def check(sequence: list[tuple[str, Any, Any]]) -> None:
        nonlocal examples
        examples += 1
        tenant = f"prop-{uuid.uuid4().hex[:10]}"
        model = Model()
        history: list[tuple[str, Any, str, bytes]] = []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = WalletServiceStub(channel)
            for kind, op, arg in sequence:
                if kind == "replay":
                    if not history:
                        continue
                    method, req, outcome, raw = history[arg % len(history)]
                    assert _call(stub, method, req) == (outcome, raw), "replay differs"
                    continue
                key = f"{uuid.uuid4().hex}" if kind == "new" else arg
                if kind == "named" and key in model.keys and model.keys[key] is not None:
                    continue  # a named key is used once (reuse is tested elsewhere)
                method, req = _request(tenant, op, key)
                expected = model.apply(op, key)
                outcome, raw = _call(stub, method, req)
                assert outcome == expected, (op, key, outcome, expected)
                if outcome != "TARGET_IS_SELF":  # rejected input is not stored, not replayed
                    history.append((method, req, outcome, raw))
            for p in PLAYERS:
                if not model.known(p):
                    continue
                r = stub.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=p))
                got = (r.balances[0].available.minor_units, r.balances[0].held.minor_units)
                assert got == (model.available[p], model.held[p]), (p, got)

    check()
    return examples


async def test_random_operation_sequences_match_the_model(app: App) -> None:
    examples = await asyncio.to_thread(_run, app.port)
    assert examples >= 10
