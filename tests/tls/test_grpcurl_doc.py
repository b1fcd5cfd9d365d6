"""docs/operations-grpcurl.md, executed: every grpcurl command line in its `sh` blocks runs
against this session's real servers on loopback (plain-text lines against the plain server,
`-cacert/-cert/-key` lines against the mutual-TLS one), so the document cannot drift from the
server. Only the address, the certificate directory and the tenant id are replaced."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import uuid
from pathlib import Path

import grpc
import pytest
from croupier.jackpot.v1 import jackpot_service_pb2, jackpot_service_pb2_grpc
from croupier.wallet.v1 import wallet_service_pb2, wallet_service_pb2_grpc

from server.app import App
from tests.certs import DevCerts
from tests.rpc import eur, key
from tests.tls.conftest import channel_credentials

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations-grpcurl.md"
DOC_ADDRESSES = ("127.0.0.1:50051", "localhost:50051")
DOC_CERTS = ".data/certs/"
DOC_TENANT = '"tenant_id":"demo"'
DOC_POOL = '"pool_id":"demo-jp.grand"'


def doc_commands() -> list[str]:
    """The grpcurl command lines of the document's ```sh blocks (`\\` continuations joined)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith(".venv/bin/grpcurl ")]


COMMANDS = doc_commands()
PLAIN = [c for c in COMMANDS if " -plaintext " in c]
MTLS = [c for c in COMMANDS if " -cert " in c and " -key " in c and " -cacert " in c]


def test_the_document_covers_health_list_describe_and_balance_both_ways() -> None:
    assert sorted(PLAIN + MTLS) == sorted(COMMANDS), "a command neither plain nor mTLS"
    for commands in (PLAIN, MTLS):
        text = "\n".join(commands)
        for needle in (
            "grpc.health.v1.Health/Check",
            " list",
            " describe croupier.wallet.v1.WalletService",
            "croupier.wallet.v1.WalletService/GetBalance",
            "croupier.jackpot.v1.JackpotService/GetPool",
        ):
            assert needle in text, f"no {needle.strip()} command in {commands}"


def argv(command: str, port: int, certs: DevCerts, tenant: str) -> list[str]:
    """The document's command for this test's server, certificates and tenant."""
    for address in DOC_ADDRESSES:
        command = command.replace(address, address.split(":")[0] + f":{port}")
    command = command.replace(DOC_CERTS, f"{certs.directory}/")
    command = command.replace(DOC_TENANT, f'"tenant_id":"{tenant}"')
    command = command.replace(DOC_POOL, f'"pool_id":"{tenant}-jp.grand"')
    args = shlex.split(command)
    args[0] = str(ROOT / args[0])
    return args


async def grpcurl(args: list[str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def check_output(command: str, out: str) -> None:
    """What an operator should see from each kind of command."""
    if "grpc.health.v1.Health/Check" in command:
        assert json.loads(out) == {"status": "SERVING"}, out
    elif command.endswith(" list"):
        services = out.split()
        assert "croupier.wallet.v1.WalletService" in services, out
        assert "grpc.health.v1.Health" in services, out
        assert "grpc.reflection.v1alpha.ServerReflection" in services, out
    elif " describe croupier.wallet.v1.WalletService" in command:
        assert "service WalletService" in out and "rpc GetBalance" in out, out
    elif " describe croupier.wallet.v1.GetBalanceRequest" in command:
        assert "string tenant_id = 1;" in out and "string player_id = 2;" in out, out
    elif command.endswith("WalletService/GetBalance"):
        balances = json.loads(out)["balances"]
        assert balances == [
            {
                "available": {"minor_units": "10750", "currency": "EUR"},
                "held": {"minor_units": "250", "currency": "EUR"},
                # the buckets of bonus money (docs/bonus.md); zero is left out by grpcurl
                "cash": {"minor_units": "10750", "currency": "EUR"},
                "bonus": {"currency": "EUR"},
                "locked": {"currency": "EUR"},
            }
        ], out
    elif command.endswith("JackpotService/GetPool"):
        pool = json.loads(out)["pool"]
        assert pool["amount"] == {"minor_units": "100000", "currency": "EUR"}, out
        assert pool["cycle"] == "1" and len(pool["seed_commitment"]) == 64, out
    else:
        pytest.fail(f"no expectation for {command!r}: add one here")


async def fund_alice(channel: grpc.aio.Channel, tenant: str) -> None:
    """alice: 110.00 EUR credited, a 2.50 bet held -> 107.50 available, 2.50 held."""
    wallet = wallet_service_pb2_grpc.WalletServiceStub(channel)
    await wallet.Credit(
        wallet_service_pb2.CreditRequest(
            tenant_id=tenant, player_id="alice", idempotency_key=key(), amount=eur(11000)
        ),
        timeout=10,
    )
    await wallet.AuthorizeBet(
        wallet_service_pb2.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="alice",
            idempotency_key=key(),
            bet_id="bet-1",
            round_id="round-1",
            game_id="starburst",
            amount=eur(250),
        ),
        timeout=10,
    )
    jackpots = jackpot_service_pb2_grpc.JackpotServiceStub(channel)
    await jackpots.CreateJackpot(
        jackpot_service_pb2.CreateJackpotRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            jackpot_id=f"{tenant}-jp",
            currency="EUR",
            scope=jackpot_service_pb2.JACKPOT_SCOPE_LOCAL,
            tiers=[
                jackpot_service_pb2.TierConfig(
                    tier="grand",
                    kind=jackpot_service_pb2.POOL_KIND_PROGRESSIVE,
                    seed_minor_units=100000,
                    contribution_rate_ppm=10000,
                    trigger=jackpot_service_pb2.TRIGGER_KIND_EXTERNAL,
                )
            ],
        ),
        timeout=10,
    )


@pytest.mark.parametrize("command", PLAIN)
async def test_plain_text_command(command: str, app: App, certs: DevCerts) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        await fund_alice(ch, tenant)
    code, out, err = await grpcurl(argv(command, app.port, certs, tenant))
    assert code == 0, err
    check_output(command, out)


@pytest.mark.parametrize("command", MTLS)
async def test_mutual_tls_command(command: str, mtls_app: App, certs: DevCerts) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    creds = channel_credentials(certs, certs)
    async with grpc.aio.secure_channel(f"localhost:{mtls_app.port}", creds) as ch:
        await fund_alice(ch, tenant)
    code, out, err = await grpcurl(argv(command, mtls_app.port, certs, tenant))
    assert code == 0, err
    check_output(command, out)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (("-cert", "-key"), "Failed to dial target host"),
        (("-cacert", "-cert", "-key"), "certificate signed by unknown authority"),
    ],
)
async def test_grpcurl_refusals_the_document_describes(
    mtls_app: App, certs: DevCerts, drop: tuple[str, ...], message: str
) -> None:
    """Without a client certificate the mTLS server refuses grpcurl; without our CA grpcurl
    refuses the server. Both exit non-zero with the message the document quotes."""
    args = argv(MTLS[0], mtls_app.port, certs, "t")
    for flag in drop:
        i = args.index(flag)
        del args[i : i + 2]
    args[1:1] = ["-connect-timeout", "3"]  # grpcurl may retry a failed dial for 10 s otherwise
    code, out, err = await grpcurl(args)
    assert code != 0, out
    assert message in err, err
    assert message in DOC.read_text()


async def test_plain_text_grpcurl_is_refused_by_the_mtls_server(
    mtls_app: App, certs: DevCerts
) -> None:
    args = argv(PLAIN[0], mtls_app.port, certs, "t")
    args[1:1] = ["-connect-timeout", "3"]  # grpcurl may retry a failed dial for 10 s otherwise
    code, out, err = await grpcurl(args)
    assert code != 0, out
    assert "Failed to dial target host" in err, err
