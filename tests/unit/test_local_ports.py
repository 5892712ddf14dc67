"""The ports the local spot cluster gives Ray's head (GCS, dashboard agent) are chosen below
the kernel's ephemeral range, so no outgoing connection can take one between the choice and
Ray's bind (a `make demo` failed so: "Failed to start the grpc server ... Address already in
use"). Real sockets; nothing faked."""

from __future__ import annotations

import socket

from tuner.spot.local import _ephemeral_low, free_port


def test_a_chosen_port_is_free_and_below_the_ephemeral_range():
    low = _ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(10000 <= p < low for p in ports)
    assert len(ports) > 1  # drawn at random, not one fixed port
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # raises if something holds it


def test_a_port_in_use_is_not_chosen(monkeypatch):
    """With the range narrowed to one port that a listener holds, and the next free."""
    import tuner.spot.local as local

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken = held.getsockname()[1]
    draws = iter([taken, taken, taken + 1])
    monkeypatch.setattr(local._PORTS, "randrange", lambda a, b: next(draws))
    try:
        assert free_port() == taken + 1
    finally:
        held.close()
