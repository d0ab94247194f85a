"""A TCP proxy that a test or a demo controls, to cut the network between two parts (e.g. collector and
broker) and restore it, without touching either process.

``cut()`` drops every open connection and refuses new ones (connections are accepted and closed at once, as a
dead link with a live NAT in front of it looks); ``restore()`` lets traffic through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

BUFFER_BYTES = 65536


@dataclass(kw_only=True)
class TcpProxy:
    target_host: str
    target_port: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    _server: socket.socket | None = field(default=None, init=False)
    _open: bool = field(default=True, init=False)
    _conns: set[socket.socket] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stopped: threading.Event = field(default_factory=threading.Event, init=False)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.getsockname()[1])

    def start(self) -> TcpProxy:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.listen_host, self.listen_port))
        server.listen(128)
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._accept_loop, name="tcpproxy-accept", daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            self._open = False
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    def restore(self) -> None:
        with self._lock:
            self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        if self._server is not None:
            _close(self._server)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open:
                _close(client)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(BUFFER_BYTES)
                if not data or not self._open:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _close(s)
            with self._lock:
                self._conns -= {src, dst}


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
