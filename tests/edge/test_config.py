"""Edge configuration: integrations from TOML and JSON, validation, secrets kept out of reprs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.edge.config import ConfigError, EdgeSettings, dev_integrations, load_integrations
from server.edge.forward import wallet_key
from server.edge.main import embedded_url
from server.edge.signature import sign, verify

SECRET = "provider-secret-0123456789"


def test_toml_file_and_json_env(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        '[[integration]]\nname = "acme"\ntenant = "casino-1"\nsecret_env = "ACME"\n'
        'path_prefix = "/sb/acme"\ncurrencies = ["EUR", "USD"]\n'
    )
    extra = [{"name": "beta", "tenant": "casino-2", "secret": SECRET}]
    env = {
        "CROUPIER_EDGE_CONFIG": str(path),
        "CROUPIER_EDGE_INTEGRATIONS": json.dumps(extra),
        "ACME": SECRET,
    }
    acme, beta = load_integrations(env)
    assert (acme.name, acme.tenant_id, acme.path_prefix) == ("acme", "casino-1", "/sb/acme")
    assert acme.secret == SECRET.encode() and acme.currencies == {"EUR", "USD"}
    assert beta.path_prefix == "/sportsbook/beta" and beta.accepts_currency("JPY")
    assert SECRET not in repr(acme) and SECRET not in repr(EdgeSettings.from_env(env))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"name": "Bad Name", "tenant": "t", "secret": SECRET}, "name"),
        ({"name": "a", "tenant": "has space", "secret": SECRET}, "tenant"),
        ({"name": "a", "tenant": "t"}, "secret"),
        ({"name": "a", "tenant": "t", "secret": "short"}, "at least 16"),
        ({"name": "a", "tenant": "t", "secret_env": "UNSET_VAR"}, "unset"),
        ({"name": "a", "tenant": "t", "secret": SECRET, "path_prefix": "no-slash"}, "path_prefix"),
        ({"name": "a", "tenant": "t", "secret": SECRET, "path_prefix": "/admin"}, "path_prefix"),
        ({"name": "a", "tenant": "t", "secret": SECRET, "currencies": ["ZZZ"]}, "ZZZ"),
    ],
)
def test_bad_integrations_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_integrations({"CROUPIER_EDGE_INTEGRATIONS": json.dumps([table])})
    assert SECRET not in str(exc.value)


def test_duplicate_names_and_prefixes() -> None:
    a = {"name": "a", "tenant": "t", "secret": SECRET, "path_prefix": "/x"}
    b = {"name": "b", "tenant": "t", "secret": SECRET, "path_prefix": "/x"}
    with pytest.raises(ConfigError, match="path_prefix"):
        load_integrations({"CROUPIER_EDGE_INTEGRATIONS": json.dumps([a, b])})
    with pytest.raises(ConfigError, match="name"):
        load_integrations(
            {"CROUPIER_EDGE_INTEGRATIONS": json.dumps([a, {**a, "path_prefix": "/y"}])}
        )


def test_settings_limits() -> None:
    with pytest.raises(ConfigError):
        EdgeSettings.from_env({"CROUPIER_EDGE_MAX_BODY_BYTES": "10"})
    with pytest.raises(ConfigError):
        EdgeSettings.from_env({"CROUPIER_EDGE_ADDR": "nope"})
    s = EdgeSettings.from_env({"CROUPIER_GRPC_ADDR": "127.0.0.1:6000"})
    assert (s.host, s.port, s.wallet_addr) == ("127.0.0.1", 8080, "127.0.0.1:6000")


def test_dev_integration_is_the_documented_one() -> None:
    (dev,) = dev_integrations()
    assert (dev.name, dev.tenant_id, dev.path_prefix) == ("dev", "dev", "/sportsbook/dev")
    assert dev.uses_dev_secret
    docs = (Path(__file__).resolve().parents[2] / "docs" / "sportsbook.md").read_text()
    assert dev.secret.decode() in docs


def test_wallet_keys_are_scoped_and_fit() -> None:
    assert wallet_key("acme", "T-1") == "sb:acme:T-1"
    assert wallet_key("acme", "T-1") != wallet_key("beta", "T-1")
    for odd in ("x" * 200, "é", "a b", "~T-1"):
        k = wallet_key("acme", odd)
        assert k.startswith("sb:acme:~") and len(k) <= 128
    assert wallet_key("acme", "~T-1") != wallet_key("acme", "T-1")


def test_signature_is_case_insensitive_hex_only() -> None:
    body = b'{"a":1}'
    good = sign(body, SECRET.encode())
    assert verify(body, SECRET.encode(), good.upper())
    assert verify(body, SECRET.encode(), f" {good} ")
    assert not verify(body, SECRET.encode(), None)
    assert not verify(body, SECRET.encode(), good[:-1])
    assert not verify(body, SECRET.encode(), good + "0")
    assert not verify(body, SECRET.encode(), "g" * 64)
    assert not verify(body, SECRET.encode(), "é" * 64)


def test_api_key_from_env_is_kept_secret() -> None:
    table = {"name": "a", "tenant": "t", "secret": SECRET, "api_key_env": "KEY"}
    (a,) = load_integrations({"CROUPIER_EDGE_INTEGRATIONS": json.dumps([table]), "KEY": "crp_x_y"})
    assert a.call_metadata() == (("authorization", "Bearer crp_x_y"),)
    assert "crp_x_y" not in repr(a)
    with pytest.raises(ConfigError, match="api_key_env"):
        load_integrations({"CROUPIER_EDGE_INTEGRATIONS": json.dumps([table])})
    (b,) = load_integrations(
        {"CROUPIER_EDGE_INTEGRATIONS": json.dumps([{**table, "api_key_env": "K"}]), "K": "k"}
    )
    assert b.api_key == "k"


def test_embedded_cluster_is_found_through_postmaster_pid(tmp_path: Path) -> None:
    # croupier-edge without CROUPIER_DATABASE_URL attaches to the server's embedded cluster
    assert embedded_url(tmp_path) is None
    pgdata = tmp_path / "postgres" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "postmaster.pid").write_text(
        "4242\n/x/pgdata\n1700000000\n5433\n/tmp/croupier-pg-abc\n\n  1234  5678\nready\n"
    )
    url = embedded_url(tmp_path)
    assert url is not None
    assert url.endswith("@/postgres?host=/tmp/croupier-pg-abc&port=5433")
