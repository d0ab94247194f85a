"""The fault-injection proxy really cuts and restores a TCP path."""

from __future__ import annotations

import socket
import threading

from simulators.tcpproxy import TcpProxy


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(
                target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(1024), b"")], daemon=True
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _roundtrip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"ping")
        return s.recv(16)


def test_cut_and_restore() -> None:
    server, port = _echo_server()
    proxy = TcpProxy(target_host="127.0.0.1", target_port=port).start()
    try:
        assert _roundtrip(proxy.port) == b"ping"
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"a")
        assert live.recv(4) == b"a"
        proxy.cut()
        assert live.recv(4) == b""  # the open connection was dropped
        assert _roundtrip(proxy.port) == b""  # new ones are closed at once
        proxy.restore()
        assert _roundtrip(proxy.port) == b"ping"
    finally:
        proxy.stop()
        server.close()
