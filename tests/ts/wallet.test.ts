// A TypeScript client of the Python server over real gRPC (HTTP/2, gRPC protocol), built only
// from the stubs in generated/ts (protoc-gen-es v2) and @connectrpc/connect-node.
//
// Environment: CROUPIER_GRPC_PORT (required), the server's loopback port; with
// CROUPIER_TLS_CA, CROUPIER_TLS_CLIENT_CERT and CROUPIER_TLS_CLIENT_KEY (PEM files) and
// CROUPIER_MTLS_PORT also set, the same round trip runs over mutual TLS.
// Run: node --import tsx --test tests/ts/*.test.ts (tests/ts/test_node_client.py does it).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  JackpotScope,
  JackpotService,
  PoolKind,
  TriggerKind,
} from "../../generated/ts/croupier/jackpot/v1/jackpot_service_pb.js";
import { WalletService } from "../../generated/ts/croupier/wallet/v1/wallet_service_pb.js";
import { ErrorInfoSchema } from "../../generated/ts/google/rpc/error_details_pb.js";

type Wallet = Client<typeof WalletService>;

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
}

function plainWallet(port: string): Wallet {
  // HTTP/2 with prior knowledge, gRPC protocol (grpc-status-details-bin trailers included)
  return createClient(WalletService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
}

function mtlsWallet(port: string, ca: string, cert: string, key: string): Wallet {
  return createClient(
    WalletService,
    createGrpcTransport({
      baseUrl: `https://localhost:${port}`,
      nodeOptions: {
        ca: readFileSync(ca),
        cert: readFileSync(cert),
        key: readFileSync(key),
      },
    }),
  );
}

const eur = (minorUnits: bigint) => ({ minorUnits, currency: "EUR" });

/** Credit 100.00 EUR, bet 2.50, settle with a 10.00 win, read 107.50; then a bet above the
 * balance fails with FAILED_PRECONDITION and ErrorInfo INSUFFICIENT_FUNDS, and moves nothing. */
async function roundTrip(wallet: Wallet): Promise<void> {
  const tenantId = `ts-${randomUUID().slice(0, 12)}`;
  const playerId = "alice";
  const credited = await wallet.credit({
    tenantId,
    playerId,
    idempotencyKey: "dep-1",
    amount: eur(10000n),
  });
  assert.equal(credited.balance?.available?.minorUnits, 10000n);
  assert.equal(credited.balance?.available?.currency, "EUR");

  const bet = await wallet.authorizeBet({
    tenantId,
    playerId,
    idempotencyKey: "bet-1",
    betId: "bet-1",
    roundId: "round-1",
    gameId: "starburst",
    amount: eur(250n),
  });
  assert.notEqual(bet.transactionId, "");
  assert.equal(bet.balance?.available?.minorUnits, 9750n);
  assert.equal(bet.balance?.held?.minorUnits, 250n);

  const settled = await wallet.settleBet({
    tenantId,
    playerId,
    idempotencyKey: "settle-1",
    betId: "bet-1",
    roundId: "round-1",
    gameId: "starburst",
    win: eur(1000n),
  });
  assert.equal(settled.captured?.minorUnits, 250n);
  assert.equal(settled.win?.minorUnits, 1000n);
  assert.equal(settled.balance?.available?.minorUnits, 10750n);

  const balance = await wallet.getBalance({ tenantId, playerId });
  assert.equal(balance.balances.length, 1);
  const [eurBalance] = balance.balances;
  assert.equal(eurBalance.available?.minorUnits, 10750n);
  assert.equal(eurBalance.available?.currency, "EUR");
  assert.equal(eurBalance.held?.minorUnits ?? 0n, 0n);

  const tooMuch = wallet.authorizeBet({
    tenantId,
    playerId,
    idempotencyKey: "bet-2",
    betId: "bet-2",
    roundId: "round-2",
    gameId: "starburst",
    amount: eur(1_000_000n),
  });
  await assert.rejects(tooMuch, (err: unknown) => {
    const e = ConnectError.from(err);
    assert.equal(e.code, Code.FailedPrecondition);
    // google.rpc.Status from the grpc-status-details-bin trailer, one ErrorInfo
    const infos = e.findDetails(ErrorInfoSchema);
    assert.equal(infos.length, 1);
    assert.equal(infos[0].reason, "INSUFFICIENT_FUNDS");
    assert.equal(infos[0].domain, "croupier");
    return true;
  });
  const after = await wallet.getBalance({ tenantId, playerId, currency: "EUR" });
  assert.equal(after.balances[0].available?.minorUnits, 10750n);
  assert.equal(after.balances[0].held?.minorUnits ?? 0n, 0n);
}

describe("WalletService from TypeScript over gRPC", () => {
  const port = env("CROUPIER_GRPC_PORT");

  it("credits, authorizes, settles and reads balances in minor units (plain text)", async () => {
    assert.ok(port, "CROUPIER_GRPC_PORT is not set");
    await roundTrip(plainWallet(port));
  });

  it("creates a jackpot, contributes and reads the pool (plain text)", async () => {
    assert.ok(port, "CROUPIER_GRPC_PORT is not set");
    const jackpot = createClient(
      JackpotService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
    );
    const tenantId = `ts-${randomUUID().slice(0, 12)}`;
    const jackpotId = `ts-jp-${randomUUID().slice(0, 8)}`;
    await jackpot.createJackpot({
      tenantId,
      idempotencyKey: "create-1",
      jackpotId,
      currency: "EUR",
      scope: JackpotScope.LOCAL,
      tiers: [
        {
          tier: "grand",
          kind: PoolKind.PROGRESSIVE,
          seedMinorUnits: 100000n,
          contributionRatePpm: 10000n,
          trigger: TriggerKind.EXTERNAL,
        },
      ],
    });
    const contributed = await jackpot.contribute({
      tenantId,
      idempotencyKey: "bet-1",
      jackpotId,
      playerId: "alice",
      gameId: "starburst",
      roundId: "round-1",
      bet: eur(1000n),
    });
    assert.equal(contributed.tiers.length, 1);
    const { pool } = await jackpot.getPool({ tenantId, poolId: `${jackpotId}.grand` });
    // seed 1000.00 + 1% of a 10.00 bet = 1000.10 EUR, in minor units
    assert.equal(pool?.amount?.minorUnits, 100010n);
    assert.equal(pool?.amount?.currency, "EUR");
    assert.notEqual(pool?.seedCommitment ?? "", "");
  });

  const mtlsPort = env("CROUPIER_MTLS_PORT");
  const ca = env("CROUPIER_TLS_CA");
  const cert = env("CROUPIER_TLS_CLIENT_CERT");
  const key = env("CROUPIER_TLS_CLIENT_KEY");
  it(
    "does the same over mutual TLS with a client certificate",
    { skip: mtlsPort && ca && cert && key ? false : "no mTLS server given" },
    async () => {
      await roundTrip(mtlsWallet(mtlsPort!, ca!, cert!, key!));
    },
  );

  it(
    "is refused over mutual TLS without a client certificate, and moves nothing",
    { skip: mtlsPort && ca && cert && key ? false : "no mTLS server given" },
    async () => {
      const trusted = mtlsWallet(mtlsPort!, ca!, cert!, key!);
      const anonymous = createClient(
        WalletService,
        createGrpcTransport({
          baseUrl: `https://localhost:${mtlsPort}`,
          nodeOptions: { ca: readFileSync(ca!) },
        }),
      );
      const tenantId = `ts-${randomUUID().slice(0, 12)}`;
      const credit = (idempotencyKey: string, minorUnits: bigint) => ({
        tenantId,
        playerId: "bob",
        idempotencyKey,
        amount: eur(minorUnits),
      });
      await trusted.credit(credit("dep-1", 1000n));
      // the server ends the TLS session when no certificate comes (TLS 1.3 reports that after
      // the client's first flight): the client sees Unavailable or its stream reset (Canceled)
      await assert.rejects(anonymous.credit(credit("dep-2", 500n)), (err: unknown) => {
        assert.ok(err instanceof ConnectError, String(err));
        assert.ok([Code.Unavailable, Code.Canceled].includes(err.code), err.message);
        return true;
      });
      const balance = await trusted.getBalance({ tenantId, playerId: "bob" });
      assert.equal(balance.balances[0].available?.minorUnits, 1000n);
    },
  );
});
