"""The Host/Origin guard with a wildcard bind (``--host 0.0.0.0``): only this machine's names,
localhost and ``--allowed-host`` values pass; a rebinding attacker's name is refused."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from threeam.errors import InputError
from threeam.serve.app import create_app
from threeam.serve.config import ServeConfig
from threeam.serve.security import local_host_names


@pytest.fixture(scope="module", params=["0.0.0.0", "::"])
def wild(request, predictor, served):
    root, _ = served
    cfg = ServeConfig(root=root, host=request.param, allowed_hosts=("lan-box.example",))
    with TestClient(create_app(predictor, cfg), base_url="http://localhost") as c:
        yield c


def test_an_attackers_host_is_refused_on_a_wildcard_bind(wild):
    r = wild.get("/api/videos", headers={"host": "attacker.example"})
    assert r.status_code == 400 and "attacker.example" in r.json()["detail"]
    r = wild.post("/api/sessions", json={"path": "square"},
                  headers={"host": "attacker.example:7263", "origin": "http://attacker.example:7263"})
    assert r.status_code == 400
    r = wild.get("/api/status", headers={"host": "attacker.example", "origin": "http://attacker.example"})
    assert r.status_code == 400


def test_own_names_and_allowed_hosts_pass_on_a_wildcard_bind(wild):
    for host in ("localhost", "127.0.0.1:7263", "[::1]:7263", "lan-box.example:7263"):
        assert wild.get("/api/status", headers={"host": host}).status_code == 200, host
    r = wild.get("/api/status", headers={"host": "lan-box.example:7263", "origin": "http://lan-box.example:7263"})
    assert r.status_code == 200
    assert wild.get("/api/status", headers={"host": "localhost", "origin": "http://attacker.example"}).status_code == 403


def test_the_machines_own_names_are_accepted(wild):
    names = local_host_names()
    assert {"localhost", "127.0.0.1", "::1"} <= names
    assert "*" not in names and "0.0.0.0" not in names and "::" not in names
    import socket

    assert socket.gethostname().lower() in names
    assert wild.get("/api/status", headers={"host": socket.gethostname()}).status_code == 200


def test_a_star_allowed_host_is_refused(predictor, served):
    root, _ = served
    with pytest.raises(InputError, match=r"--allowed-host"):
        create_app(predictor, ServeConfig(root=root, host="0.0.0.0", allowed_hosts=("*",)))
