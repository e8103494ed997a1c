"""A deliberately bad WebSocket client on a plain socket: it can stop reading."""

from __future__ import annotations

import base64
import os
import socket
import struct

from websockets.frames import Frame, Opcode


class RawClient:
    """Does the opening handshake by hand, then reads only when told to."""

    def __init__(
        self, port: int, *, rcvbuf: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connect so the TCP window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.sock.sendall(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during handshake"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        #: The handshake response's headers, names in lower case.
        self.response_headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head.decode().split("\r\n")[1:])
        }

    def send_text(self, text: str) -> None:
        self.sock.sendall(Frame(Opcode.TEXT, text.encode()).serialize(mask=True))

    def send_binary(self, data: bytes) -> None:
        self.sock.sendall(Frame(Opcode.BINARY, data).serialize(mask=True))

    def read_frame(self) -> tuple[int, bytes]:
        """Blocking read of one frame: (opcode, payload)."""
        opcode, _, payload = self.read_frame_bits()
        return opcode, payload

    def read_frame_bits(self) -> tuple[int, bool, bytes]:
        """Blocking read of one frame: (opcode, whether RSV1 — compressed — is set, payload)."""
        header = self._read(2)
        rsv1 = bool(header[0] & 0x40)
        opcode, length = header[0] & 0x0F, header[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return opcode, rsv1, self._read(length)

    def read_until_close(self) -> int:
        """Read and discard frames until a close frame; returns its close code."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == Opcode.CLOSE:
                return int(struct.unpack("!H", payload[:2])[0])

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def close(self) -> None:
        self.sock.close()
