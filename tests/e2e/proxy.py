"""A TCP forwarder whose connections a test can cut and hold off, as a lost network does."""

from __future__ import annotations

import socket
import threading


class CuttableProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`hold` drops every connection and
    refuses new ones (closed at once, as an unreachable network) until :meth:`release`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._held = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                held = self._held
            if held:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def hold(self) -> None:
        with self._lock:
            self._held = True
            cut, self._open = self._open, []
        for s in cut:
            _close(s)

    def release(self) -> None:
        with self._lock:
            self._held = False

    def close(self) -> None:
        self.hold()
        _close(self._server)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # cut: the other direction ends too
    finally:
        _close(source)
        _close(sink)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or closed already
    s.close()
