"""Issue 25 against a real `meshdream serve` on 127.0.0.1: long polls that never block the server, results that
stay until fetched or expired, and settings refused at submit (real sockets, real processes, the built-in model)."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import numpy as np
import pytest
from meshdream import client

from tests.conftest import asset
from tests.server.test_server import SHAPE, SMALL, Server, raw

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("faults")).wait_ready()
    yield s
    s.stop()


def _health_ms(c: client.Client) -> float:
    t = time.perf_counter()
    assert c.health()["status"] == "ok"
    return (time.perf_counter() - t) * 1000


def test_health_answers_at_once_with_60_abandoned_and_45_live_long_polls(server):
    c = client.Client(server.url)
    running = c.submit_texture(str(asset("spot.obj")), "oak", **{**SMALL, "steps": 200})
    queued = c.submit_shape("chair", **SHAPE)  # waits behind `running`: its polls wait the whole 30 s
    s = c.status(running)
    while not (s["stage"] == "denoise" and s["step"] >= 1):
        s = c.status(running, after=s["version"], wait=10)
    version = c.status(queued)["version"]

    abandoned = []  # sent, then the client goes away without reading the answer
    for _ in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /v1/jobs/{queued}?wait=30&after={version} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        abandoned.append(sock)
    deadline = time.monotonic() + 20
    while c.health()["polls"] < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.health()["polls"] == 60
    for sock in abandoned:
        sock.close()
    while c.health()["polls"] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.health()["polls"] == 0  # each poll ended when its client left, not 30 s later

    stop, seen, errors = threading.Event(), [0] * 45, []

    def poll(k: int) -> None:  # a well-behaved client: long polls the running job until it ends
        try:
            mine = client.Client(server.url)
            st = mine.status(running)
            while st["state"] in ("queued", "running") and not stop.is_set():
                st = mine.status(running, after=st["version"], wait=30)
                seen[k] += 1
        except Exception as exc:
            errors.append(exc)

    pollers = [threading.Thread(target=poll, args=(k,), daemon=True) for k in range(45)]
    for t in pollers:
        t.start()
    while min(seen) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    # 60 more abandoned polls, left open this time (a client that hangs): they hold nothing either.
    hanging = []
    for _ in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /v1/jobs/{queued}?wait=30&after={version} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        hanging.append(sock)
    times = sorted(_health_ms(c) for _ in range(15))
    t = time.perf_counter()
    submitted = c.submit_shape("lamp", **SHAPE)
    submit_ms = (time.perf_counter() - t) * 1000
    print(f"health under 60 hanging + 45 live polls: median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms;"
          f" submit {submit_ms:.1f} ms")
    assert statistics.median(times) < 100
    assert c.status(submitted)["state"] == "queued"
    for sock in hanging:
        sock.close()
    c.cancel(running)
    stop.set()
    for t in pollers:
        t.join(60)
    assert not errors and all(not t.is_alive() for t in pollers)
    assert c.wait(queued).points.shape == (256, 3)
