"""A fake kubelet: what the API server reaches for `pods/attach` and `pods/log`, minus containers.

The test API server has no kubelet. Registering a Node whose InternalIP is 127.0.0.1 and whose
kubelet port is this server's makes the real API server proxy `pods/attach` (a WebSocket
upgrade) and `pods/log` of Pods bound to that Node here, as it would to a real kubelet. Each
"container" is a real process (e.g. `mcp-server-time`) whose stdin, stdout and stderr this
server multiplexes on the WebSocket with the Kubernetes channel framing, choosing the
subprotocol the way the kubelet does (first of its own it finds in the client's offer).

Test controls: `drop_attaches()` cuts every attach connection (a network drop: the process
lives on), `freeze_attaches()` makes them go silent without closing (a half-dead network: no
output, no pongs), `restart(ns, pod)` replaces the process (a container restart).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One client frame (clients always mask), unmasked; fragments are not used by our client."""
    b1, b2 = _recv_exact(sock, 2)
    opcode, length = b1 & 0x0F, b2 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _recv_exact(sock, 8))
    mask = _recv_exact(sock, 4) if b2 & 0x80 else b"\0\0\0\0"
    payload = _recv_exact(sock, length)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def write_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    header = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([n])
    elif n < 1 << 16:
        header += bytes([126]) + struct.pack("!H", n)
    else:
        header += bytes([127]) + struct.pack("!Q", n)
    sock.sendall(header + payload)


class Container:
    """A real process standing for a container, with its attached WebSockets and its log."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.log: list[str] = []
        self.attached: list[tuple[socket.socket, threading.Lock]] = []
        self.frozen: set[socket.socket] = set()  # attached, but nothing gets through any more
        self.changed = threading.Condition()
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._pump, args=(proc, proc.stdout, 1), daemon=True).start()
        threading.Thread(target=self._pump, args=(proc, proc.stderr, 2), daemon=True).start()
        return proc

    def _pump(self, proc: subprocess.Popen[bytes], stream: object, channel: int) -> None:
        for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
            with self.changed:
                self.log.append(line.decode("utf-8", "replace").rstrip("\n"))
                self.changed.notify_all()
            for sock, lock in list(self.attached):
                if sock in self.frozen:
                    continue
                try:
                    with lock:
                        write_frame(sock, OP_BINARY, bytes([channel]) + line)
                except OSError:
                    pass
        stream.close()  # type: ignore[attr-defined]
        if channel == 1:
            code = proc.wait()
            status = ({"metadata": {}, "status": "Success"} if code == 0 else
                      {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                       "message": f"command terminated with non-zero exit code: {code}",
                       "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}})
            if proc is self.proc:
                for sock, lock in list(self.attached):
                    try:
                        with lock:
                            write_frame(sock, OP_BINARY, bytes([3]) + json.dumps(status).encode())
                            write_frame(sock, OP_CLOSE, struct.pack("!H", 1000))
                    except OSError:
                        pass
            with self.changed:
                self.changed.notify_all()

    def write_stdin(self, data: bytes) -> None:
        """Input for the process. Input that arrives after it exited is lost, as on a real kubelet:
        the attach stays open until the pump has sent the exit status (closing it here would
        race that status and look like a network drop)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):  # a broken pipe; stdin closed by a restart
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def restart(self) -> None:
        old = self.proc
        self.proc = self._spawn()
        self._end(old)

    def stop(self) -> None:
        self._end(self.proc)

    @staticmethod
    def _end(proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


class FakeKubelet:
    """The HTTPS server; see the module docstring."""

    def __init__(self, cert: Path, key: Path, protocols: Sequence[str] = ("v5.channel.k8s.io", "v4.channel.k8s.io"),
                 ) -> None:
        self.containers: dict[tuple[str, str], Container] = {}
        self.protocols = list(protocols)
        self.attach_requests: list[dict[str, list[str]]] = []
        self.attached_pods: list[str] = []  # the Pod of each attach request, in order
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                query = parse_qs(url.query)
                if len(parts) == 4 and parts[0] == "attach":
                    kubelet._attach(self, parts[1], parts[2], query)
                elif len(parts) == 4 and parts[0] == "containerLogs":
                    kubelet._logs(self, parts[1], parts[2], query)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, namespace: str, pod: str, argv: Sequence[str]) -> Container:
        container = Container(argv)
        self.containers[(namespace, pod)] = container
        return container

    def restart(self, namespace: str, pod: str) -> None:
        container = self.containers[(namespace, pod)]
        for sock, _ in list(container.attached):
            self._cut(sock)
        container.restart()

    def _attachments(self) -> list[tuple[Container, socket.socket]]:
        return [(container, sock) for container in self.containers.values() for sock, _ in list(container.attached)]

    def drop_attaches(self) -> int:
        attachments = self._attachments()
        for _, sock in attachments:
            self._cut(sock)
        return len(attachments)

    def freeze_attaches(self) -> int:
        attachments = self._attachments()
        for container, sock in attachments:
            container.frozen.add(sock)
        return len(attachments)

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for container in self.containers.values():
            container.stop()

    # ---- handlers -----------------------------------------------------------------------

    def _attach(self, handler: BaseHTTPRequestHandler, namespace: str, pod: str, query: dict[str, list[str]]) -> None:
        self.attach_requests.append(query)
        self.attached_pods.append(pod)
        container = self.containers.get((namespace, pod))
        if container is None:
            handler.send_error(404, f"no container for {namespace}/{pod}")
            return
        if container.proc.poll() is not None:  # what containerd answers, before any upgrade
            handler.send_error(500, "container is in CONTAINER_EXITED state")
            return
        if handler.headers.get("Upgrade", "").lower() != "websocket":
            handler.send_error(400, "only WebSocket attach is served here")
            return
        offered = [p.strip() for p in handler.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        chosen = next((p for p in self.protocols if p in offered), None)
        if chosen is None:
            handler.send_error(400, f"no supported subprotocol in {offered}")
            return
        accept = base64.b64encode(hashlib.sha1((handler.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest())
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept.decode())
        handler.send_header("Sec-WebSocket-Protocol", chosen)
        handler.end_headers()
        handler.wfile.flush()
        sock: socket.socket = handler.connection
        lock = threading.Lock()
        container.attached.append((sock, lock))
        try:
            while True:
                opcode, payload = read_frame(sock)
                if opcode == OP_CLOSE:
                    with lock:
                        write_frame(sock, OP_CLOSE, payload[:2])
                    return
                if opcode == OP_PING and sock not in container.frozen:
                    with lock:
                        write_frame(sock, OP_PONG, payload)
                elif opcode == OP_BINARY and payload[:1] == b"\x00":
                    container.write_stdin(payload[1:])
        except (OSError, ConnectionError):
            return
        finally:
            if (sock, lock) in container.attached:
                container.attached.remove((sock, lock))
            container.frozen.discard(sock)
            handler.close_connection = True

    def _logs(self, handler: BaseHTTPRequestHandler, namespace: str, pod: str, query: dict[str, list[str]]) -> None:
        container = self.containers.get((namespace, pod))
        if container is None:
            handler.send_error(404, f"no container for {namespace}/{pod}")
            return
        follow = query.get("follow", ["false"])[0] == "true"
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Connection", "close")
        handler.end_headers()
        sent = 0
        proc = container.proc
        try:
            while True:
                with container.changed:
                    lines = container.log[sent:]
                    sent += len(lines)
                for line in lines:
                    handler.wfile.write(line.encode() + b"\n")
                handler.wfile.flush()
                if not follow or proc.poll() is not None:
                    return
                with container.changed:
                    if len(container.log) == sent:
                        container.changed.wait(1.0)
        except OSError:
            return
        finally:
            handler.close_connection = True
