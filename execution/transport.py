"""SSH/SFTP transport: the only module that imports paramiko.

One SSHTransport is one authenticated connection to one CMDB server, reused for every
step on that server within a run. What it guarantees:

- the host key is checked against the fingerprint pinned in the CMDB *before* the
  credential is used; a missing or different pin refuses the connection and is audited
  (there is no auto-accept anywhere: the only unauthenticated look at a key is the
  explicit onboarding scan, scan_host_key);
- the vault credential is decrypted in connect() and nowhere else, and never reaches a
  command line, a log line or an audit entry;
- every command passes the sanitizer first (a block is audited and never sent), runs in
  its own process group on the server (setsid) whose id is recorded, so a timeout or a
  kill switch kills the remote work itself, not only our wait for it;
- the exit code decides; output is captured up to a bound, its SHA-256 over the whole stream;
- uploads are verified on the server with sha256sum before they are moved into place (the
  hash and the move are one remote command, the move only when the hash matches).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paramiko
from django.conf import settings
from django.utils.translation import gettext, gettext_lazy
from paramiko.ssh_exception import IncompatiblePeer

import audit
from cmdb import vault

from . import sanitizer
from .errors import SecurityViolation

log = logging.getLogger(__name__)
KiB = 1024
PGID_RE = re.compile(rb"^GUARDIA_PGID=(\d+)\n")
KILL_GRACE_SECONDS = 2.0
EOF_GRACE_SECONDS = 2.0
LOST_WHILE_RUNNING = gettext_lazy("명령 실행 중 %(server)s 연결이 끊겼습니다 (프로세스 그룹 %(pgid)s)")
# For commands GUARDiA builds itself (hash checks, the restart sequence): plain POSIX, and a
# shell that starts in half the time of bash, which counts at seven commands a server.
POSIX_SHELL = "/bin/sh"
IDLE_WAKEUP_SECONDS = 1.0
SHELL_PATH_RE = re.compile(r"^/[A-Za-z0-9/_.-]{1,64}$")
SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")

# The step supervisor (SSH_STEP_SESSION): one long-lived channel per connection running a POSIX
# shell that reads its script from the channel (sh -s). Each step is one statement written to it,
# which runs the step exactly as a channel of its own would: the same shell-quoted text, in a new
# process group (setsid -w), the group id first on stderr, stdin from /dev/null. When the step
# ends the statement writes ``\n<nonce> <id> <exit status>\n`` on stdout and on stderr; the nonce
# is random per connection and never part of a step, so no output can fake an end. A step costs
# a write on an open channel and one process start, instead of a channel open, an exec request,
# and sshd starting a session, a login shell and a wrapper shell for it.
SUPERVISOR = f"exec {POSIX_SHELL} -s"
END_LINES = "printf '\\n%s %s %s\\n' {nonce} {id} \"$rc\"; printf '\\n%s %s %s\\n' {nonce} {id} \"$rc\" >&2"
STEP_STATEMENT = "setsid -w {shell} -c {inner} </dev/null; rc=$?; " + END_LINES + "\n"
# A chain (run_chain): several steps sent at once as one program, a POSIX shell in a new process
# group that runs them one after the other, each from the same shell-quoted text and with stdin
# from /dev/null as a step of its own, and writes each one's end line as it ends. It starts the
# next only when the step before ended with an accepted status and no hold came (SIGUSR1 to the
# chain's shell, sent when the run is stopping); a kill of its group ends the chain with the
# step under way. The statement around it writes one more end line, the chain's own, when the
# program is over, however it ended.
CHAIN_STEP = "{shell} -c {command} </dev/null; rc=$?; " + END_LINES
CHAIN_CONTINUE = 'case " {codes} " in *" $rc "*) ;; *) exit 0 ;; esac; [ -z "$hold" ] || exit 0'
CHAIN_START = "trap 'hold=1' USR1; echo \"GUARDIA_PGID=$$\" >&2"


def _wakeup(channel: paramiko.Channel) -> threading.Event:
    """An event set when output arrives on either of the channel's streams or the channel closes.

    The wait loops block on it instead of on the channel's descriptor: paramiko makes an OS pipe
    pair for a channel's fileno() and writes to it and reads from it on every packet (two system
    calls and a wakeup per packet, two descriptors per channel), where a worker holding hundreds
    of connections also passes select()'s 1024 limit."""
    event = threading.Event()
    channel.in_buffer.set_event(event)
    channel.in_stderr_buffer.set_event(event)
    return event


def _wait(channel: paramiko.Channel, wakeup: threading.Event, seconds: float, hold=None) -> None:
    """Wait up to ``seconds`` for more output (or the channel's end, or ``hold`` once set).
    Cleared first and then checked, so output that came in meanwhile is seen at once and a stale
    set never spins."""
    wakeup.clear()
    if not (
        channel.recv_ready()
        or channel.recv_stderr_ready()
        or channel.closed
        or channel.eof_received
        or (hold is not None and hold.is_set())
    ):
        wakeup.wait(seconds)


class Hold(threading.Event):
    """A run's stop flag that also wakes the chains waiting on it (``watching``): they pass it on
    to their servers at once instead of looking at it every 50 ms."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: set[threading.Event] = set()
        self._watchers_lock = threading.Lock()

    def set(self) -> None:
        super().set()  # before the wake-ups: a waiter that wakes sees it set (_wait checks it)
        with self._watchers_lock:
            watchers = list(self._watchers)
        for event in watchers:
            event.set()

    @contextlib.contextmanager
    def watching(self, event: threading.Event):
        with self._watchers_lock:
            self._watchers.add(event)
        try:
            yield
        finally:
            with self._watchers_lock:
                self._watchers.discard(event)


class _Framed:
    """One stream (stdout or stderr) of one step on the supervisor channel: keeps up to
    ``limit`` bytes, hashes everything before the end marker, and stops at the marker."""

    def __init__(self, marker: bytes, limit: int, digest=None, pgid_first: bool = False):
        self.marker, self.limit, self.digest = marker, limit, digest
        self.pending = bytearray()
        self.kept = bytearray()
        self.truncated = self.done = False
        self.trailer = b""
        self.leftover = b""  # bytes after the marker: the next step's
        self.looking_for_pgid = pgid_first
        self.pgid: int | None = None

    def _commit(self, data: bytes | bytearray) -> None:
        if self.digest is not None:
            self.digest.update(data)
        room = self.limit - len(self.kept)
        self.truncated |= len(data) > room
        self.kept += data[: max(0, room)]

    def feed(self, chunk: bytes) -> None:
        if self.done:  # the next step's (a chain's steps follow each other on the stream)
            self.leftover += chunk
            return
        self.pending += chunk
        if self.looking_for_pgid:
            match = PGID_RE.match(bytes(self.pending))
            if match:
                self.pgid = int(match.group(1))
                del self.pending[: match.end()]
            # No marker on the first line: keep stderr as it came.
            self.looking_for_pgid = match is None and b"\n" not in self.pending and len(self.pending) < 64
        at = self.pending.find(self.marker)
        if at >= 0:
            end = self.pending.find(b"\n", at + len(self.marker))
            if end < 0:
                return  # the rest of the end line is still on its way
            self._commit(self.pending[:at])
            self.trailer = bytes(self.pending[at + len(self.marker) : end])
            self.leftover = bytes(self.pending[end + 1 :])
            self.pending.clear()
            self.done = True
            return
        keep = len(self.marker) - 1  # a marker may be split across two reads
        if not self.looking_for_pgid and len(self.pending) > keep:
            self._commit(self.pending[: len(self.pending) - keep])
            del self.pending[: len(self.pending) - keep]


class TransportError(Exception):
    """The SSH layer could not do what was asked; the message names the server."""


class ConnectionLost(TransportError):
    """The connection dropped while a command or transfer was under way: state unknown."""


class HostKeyMismatch(TransportError):
    """The server presented a host key other than the pinned one (or none is pinned)."""

    def __init__(self, message: str, *, expected: str, presented: str):
        super().__init__(message)
        self.expected, self.presented = expected, presented


class CommandTimeout(TransportError):
    """Raised by run(..., raise_on_timeout=True); by default run() returns timed_out=True."""

    def __init__(self, message: str, result: CommandResult):
        super().__init__(message)
        self.result = result


@dataclass
class CommandResult:
    exit_code: int | None  # None when timed out or killed without an exit status
    stdout: str
    stderr: str
    duration: float
    output_sha256: str  # SHA-256 of the complete stdout stream (also beyond max_output)
    timed_out: bool = False
    killed: bool = False  # kill_running() stopped it
    truncated: bool = False
    pgid: int | None = None  # the remote process group the command ran in

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def ok_for(self, codes: tuple[int, ...]) -> bool:
        return self.exit_code in codes and not self.timed_out and not self.killed


@dataclass(frozen=True)
class ChainStep:
    """One step of SSHTransport.run_chain: what run() takes for a single command."""

    command: str
    timeout: float
    ok_codes: tuple[int, ...] = (0,)
    shell: str | None = None
    max_output: int = 64 * KiB


# The algorithms GUARDiA negotiates, in its order of preference (in SSH the client's order
# decides among what both sides offer). Nothing else is offered, so a server that allows only
# something weaker is refused by name (IncompatibleAlgorithms): no SHA-1 anywhere (ssh-rsa
# signatures, hmac-sha1, diffie-hellman-group14-sha1/group-exchange-sha1), no DH group1, no CBC
# or 3DES, no MD5 or truncated MACs, no compression.
# Key exchange: the post-quantum hybrid where the server has it (OpenSSH 9.9 and later); then
# ECDH on NIST P-256, which both ends compute with OpenSSL's constant-time code, while OpenSSH
# up to 9.x computes curve25519 with its portable reference code (about 2 ms of the server's
# CPU a connection, the largest single part of a one-command connection's cost on the server);
# both are 128-bit security. Then curve25519 and the larger curves and groups.
KEX_ALGORITHMS = (
    "mlkem768x25519-sha256",
    "ecdh-sha2-nistp256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group14-sha256",
)
# Host keys: the onboarding scan (scan_host_key) and every connection use this one order, so a
# server presents the key type that was pinned. RSA only with SHA-2 signatures.
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
# AEAD first (one primitive a packet, no separate MAC), then CTR with an encrypt-then-MAC SHA-2.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr")
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512")
# User-key signature algorithms (an RSA credential signs with SHA-2 only).
PUBKEY_ALGORITHMS = HOST_KEY_ALGORITHMS
NEVER = {"pubkeys": ["ssh-rsa", "ssh-dss"], "keys": ["ssh-rsa", "ssh-dss"]}
# What paramiko's refusal names -> the server's KEXINIT list it concerns, and our own list.
_REFUSED_KIND = {
    "kex": (gettext_lazy("SSH 키 교환"), "kex_algo_list", KEX_ALGORITHMS),
    "host key": (gettext_lazy("SSH 호스트 키"), "server_key_algo_list", HOST_KEY_ALGORITHMS),
    "ciphers": (gettext_lazy("SSH 암호화"), "server_encrypt_algo_list", CIPHERS),
    "macs": (gettext_lazy("SSH 메시지 인증(MAC)"), "server_mac_algo_list", MACS),
    "compression": (gettext_lazy("SSH 압축"), "server_compress_algo_list", ("none",)),
}


def _supported(kind: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """``wanted`` less what this paramiko does not implement (its ``_<kind>_info`` table)."""
    known = getattr(paramiko.Transport, f"_{kind}_info")
    return tuple(name for name in wanted if name in known)


class _Transport(paramiko.Transport):
    """paramiko's Transport offering only GUARDiA's algorithms, in its order, and remembering
    the lists the server offered, so that a refusal can say what the server allows."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock, disabled_algorithms=NEVER)
        self.offered: dict[str, list[str]] = {}
        self.agreed_kex = ""
        options = self.get_security_options()
        options.kex = _supported("kex", KEX_ALGORITHMS)
        options.key_types = _supported("key", HOST_KEY_ALGORITHMS)
        options.ciphers = _supported("cipher", CIPHERS)
        options.digests = _supported("mac", MACS)
        options.compression = ("none",)
        self._preferred_pubkeys = _supported("key", PUBKEY_ALGORITHMS)

    def _parse_kex_init(self, m: paramiko.Message) -> None:
        super()._parse_kex_init(m)  # type: ignore[misc]
        # paramiko drops its key-exchange engine once the keys are in use: keep the name.
        kinds = self._kex_info  # type: ignore[attr-defined]
        self.agreed_kex = next((n for n, cls in kinds.items() if type(self.kex_engine) is cls), "")

    def _really_parse_kex_init(self, m: paramiko.Message, ignore_first_byte: bool = False) -> dict:
        parsed = super()._really_parse_kex_init(m, ignore_first_byte)  # type: ignore[misc]
        if not ignore_first_byte:  # the peer's KEXINIT (ignore_first_byte: our own, re-read)
            self.offered = parsed
        return parsed


class IncompatibleAlgorithms(TransportError):
    """The server offers none of the algorithms GUARDiA accepts for one part of the handshake."""


def _incompatible(transport: _Transport, label: str, exc: Exception) -> TransportError:
    text = str(exc)
    for kind, (name, field, ours) in _REFUSED_KIND.items():
        if f"acceptable {kind}" in text:
            offered = [a for a in transport.offered.get(field, []) if not a.startswith(("ext-info-", "kex-strict-"))]
            return IncompatibleAlgorithms(
                gettext(
                    "%(server)s 접속 거부: 서버가 허용하는 %(kind)s 알고리즘(%(offered)s)은 GUARDiA가 안전하다고 "
                    "보는 목록(%(ours)s)에 없습니다"
                )
                % {"server": label, "kind": name, "offered": ", ".join(offered) or "-", "ours": ", ".join(ours)}
            )
    return TransportError(gettext("%(server)s와 SSH 핸드셰이크 실패: %(error)s") % {"server": label, "error": exc})


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's format: SHA256: + unpadded base64 of SHA-256 of the public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    # Without it every request/response round waits on Nagle + delayed ACK (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def scan_host_key(host: str, port: int, timeout: float = 10) -> str:
    """Onboarding only: fetch a server's host-key fingerprint without authenticating.

    Called by the CMDB admin's explicit "scan host key" action, which pins the result
    and audits it. Nothing else may use it to decide whether to trust a server.
    """
    try:
        sock = _open_socket(host, port, timeout)
    except OSError as exc:
        raise TransportError(
            gettext("%(host)s:%(port)s 접속 실패: %(error)s") % {"host": host, "port": port, "error": exc}
        ) from exc
    transport = _Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return fingerprint(transport.get_remote_server_key())
    except IncompatiblePeer as exc:
        raise _incompatible(transport, f"{host}:{port}", exc) from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise TransportError(
            gettext("%(host)s:%(port)s와 SSH 핸드셰이크 실패: %(error)s") % {"host": host, "port": port, "error": exc}
        ) from exc
    finally:
        transport.close()


def _load_private_key(text: str) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(cls.__name__)
            del exc  # the message may quote key material
    raise TransportError(
        gettext("자격 증명이 쓸 수 있는 개인 키가 아닙니다 (시도: %(kinds)s)") % {"kinds": ", ".join(errors)}
    )


PARTIAL_SUFFIX = ".guardia-part"


class UploadCancelled(TransportError):
    """The kill switch (or the caller) cancelled an upload between two chunks; the partial file
    was removed."""


def hash_and_move(path: str, expected: str, move_to: str) -> str:
    """One POSIX command: print the server's SHA-256 of ``path`` and move it to ``move_to`` only
    when it is ``expected`` (the caller compares the printed hash as well, see judge_hash)."""
    if not SHA256_HEX_RE.match(expected):
        raise TransportError(f"not a SHA-256: {expected!r}")
    quoted = shlex.quote(path)
    return (
        f'h=$(sha256sum -- {quoted}) || exit $?; printf "%s\\n" "$h"; '
        f'[ "${{h%% *}}" = {expected} ] && mv -f -- {quoted} {shlex.quote(move_to)}'
    )


class Upload:
    """One SFTP transfer running on its own thread (SSHTransport.start_put): wall-clock start and
    end for the step row, the SHA-256 of what was sent, or the error that ended it."""

    def __init__(self, transport: SSHTransport, local: str | os.PathLike | bytes, remote_path: str):
        self.transport, self.local, self.remote = transport, local, remote_path
        self.partial = remote_path + PARTIAL_SUFFIX
        self.cancelled = threading.Event()
        self.started = self.ended = 0.0
        self.digest = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._send, name="guardia-upload", daemon=True)

    def start(self) -> None:
        self.started = time.time()
        self._thread.start()

    def _send(self) -> None:
        try:
            self.digest = self.transport._send(self.local, self.partial, self.cancelled)
        except BaseException as exc:  # handed to wait()'s caller
            self.error = exc
        finally:
            self.ended = time.time()
            with self.transport._lock:
                self.transport._uploads.remove(self)

    def wait(self) -> str:
        """The SHA-256 sent; raises what ended the transfer (UploadCancelled, ConnectionLost, ...)."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.digest

    def cancel(self) -> bool:
        """Stop it, wait for its thread, and remove the partial file from the server whether or
        not the transfer had finished. True if the transfer had finished (nothing was cut)."""
        self.cancelled.set()
        self._thread.join()
        if self.error is None:
            self.transport._remove_quietly(self.partial)
        return self.error is None


class SSHTransport:
    # With SSH_STEP_SESSION, the supervisor runs a connection's commands from this one on: a
    # connection that runs one command (RAW_COMMAND on a thousand servers) would pay a channel
    # more for it, not less.
    supervise_from = 2

    def __init__(
        self, server: Any, *, connect_timeout: float | None = None, task: str | None = None, many_steps: bool = False
    ):
        """``many_steps``: the caller will run several commands on this connection (a deploy or a
        restart), so the supervisor runs them all, the first one too."""
        self.server = server
        if many_steps:
            self.supervise_from = 1
        self.connect_timeout = connect_timeout or settings.SSH_CONNECT_TIMEOUT
        self.task = task  # task id for the audit entries this class writes itself
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        self._running_pgid: int | None = None
        self._kill_requested = False
        self._steps: paramiko.Channel | None = None  # the step supervisor's channel (SSH_STEP_SESSION)
        self._steps_wakeup = threading.Event()
        self._nonce = b""
        self._step_id = 0
        self._commands = 0
        self._leftover = (b"", b"")  # what the supervisor wrote after the last step's end
        self._uploads: list[Upload] = []  # transfers running beside the steps (start_put)
        self._held = False  # the chain under way was told to start no further step (run_chain)
        self.remote_shell = "/bin/bash" if getattr(server, "os_type", "linux") == "linux" else "/bin/sh"
        # The supervisor needs setsid and base64 (util-linux, coreutils): Linux servers only.
        self.step_session = bool(getattr(settings, "SSH_STEP_SESSION", False)) and self.remote_shell == "/bin/bash"

    @property
    def label(self) -> str:
        return f"{self.server.server_id} ({self.server.ip}:{self.server.ssh_port})"

    # -- connection ------------------------------------------------------------------------
    def __enter__(self) -> SSHTransport:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def connect(self) -> SSHTransport:
        if self.connected:
            return self
        server = self.server
        credential = server.credential
        if credential is None or not credential.has_secret:
            raise TransportError(f"{server.server_id} has no credential in the vault")
        try:
            sock = _open_socket(server.ip, server.ssh_port, self.connect_timeout)
        except OSError as exc:
            raise TransportError(
                gettext("%(server)s 접속 실패: %(error)s") % {"server": self.label, "error": exc}
            ) from exc
        transport = _Transport(sock)
        try:
            transport.banner_timeout = self.connect_timeout
            transport.auth_timeout = self.connect_timeout
            transport.start_client(timeout=self.connect_timeout)
            self._verify_host_key(transport)
            self._authenticate(transport, credential)
        except HostKeyMismatch:
            transport.close()
            raise
        except paramiko.AuthenticationException as exc:
            transport.close()
            audit.record(
                None,
                "ssh.auth_failed",
                task=self.task,
                target=server.server_id,
                payload={"user": server.login_user, "kind": credential.kind},
            )
            raise TransportError(
                gettext("%(server)s에서 %(user)s 계정 인증 실패")
                % {"server": self.label, "user": repr(server.login_user)}
            ) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            if isinstance(exc, IncompatiblePeer):
                raise _incompatible(transport, self.label, exc) from exc
            raise TransportError(
                gettext("%(server)s와 SSH 핸드셰이크 실패: %(error)s") % {"server": self.label, "error": exc}
            ) from exc
        transport.set_keepalive(5)  # a silent network loss surfaces as ConnectionLost
        # paramiko's reader thread wakes every 0.1 s on an idle socket to look at its own flags.
        # A rolling group keeps up to a batch of connections open for its rollback (100 at 1,000
        # servers): 1,000 wake-ups a second, each taking the GIL from the threads doing work.
        # close() does not wait for that wake-up, and keepalives still go out every 5 s.
        sock.settimeout(IDLE_WAKEUP_SECONDS)
        self._transport = transport
        return self

    @property
    def algorithms(self) -> dict[str, str]:
        """What this connection negotiated: key exchange, host key, cipher, MAC (none with AEAD)."""
        transport = self._transport
        if not isinstance(transport, _Transport):
            return {}
        aead = transport.local_cipher.endswith("-gcm@openssh.com")
        return {
            "kex": transport.agreed_kex,
            "host_key": transport.host_key_type or "",
            "cipher": transport.local_cipher,
            "mac": "" if aead else str(transport.local_mac),
        }

    def _verify_host_key(self, transport: paramiko.Transport) -> None:
        presented = fingerprint(transport.get_remote_server_key())
        expected = (self.server.host_key_fingerprint or "").strip()
        if expected and hmac.compare_digest(presented.encode(), expected.encode()):
            return
        reason = "no host key is pinned" if not expected else "host key changed"
        audit.record(
            None,
            "ssh.host_key_refused",
            task=self.task,
            target=self.server.server_id,
            payload={
                "reason": reason,
                "expected": expected,
                "presented": presented,
                "address": f"{self.server.ip}:{self.server.ssh_port}",
            },
        )
        log.warning("refused %s: %s (pinned %s, presented %s)", self.label, reason, expected or "-", presented)
        raise HostKeyMismatch(
            f"{reason} for {self.label}: presented {presented}"
            + (f", pinned {expected}" if expected else "; scan and pin it in the CMDB first"),
            expected=expected,
            presented=presented,
        )

    def _authenticate(self, transport: paramiko.Transport, credential: Any) -> None:
        username = self.server.login_user
        secret = credential.reveal()  # the one place a credential is decrypted
        try:
            if credential.kind == credential.Kind.PRIVATE_KEY:
                transport.auth_publickey(username, _load_private_key(secret))
            else:
                transport.auth_password(username, secret)
        finally:
            del secret
        if not transport.is_authenticated():
            raise paramiko.AuthenticationException("not authenticated")

    def close(self) -> None:
        self._end_steps()
        sftp, self._sftp = self._sftp, None
        transport, self._transport = self._transport, None
        if sftp is not None:
            try:
                sftp.close()
            except Exception:  # a dead connection cannot be closed politely
                pass
        if transport is not None:
            transport.close()

    def probe(self) -> bool:
        """Can we reach the server's sshd right now? (TCP + SSH banner, no login.)"""
        try:
            with _open_socket(self.server.ip, self.server.ssh_port, min(self.connect_timeout, 3)) as sock:
                sock.settimeout(min(self.connect_timeout, 3))
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def _require(self) -> paramiko.Transport:
        if not self.connected:
            if self._transport is not None:
                raise ConnectionLost(gettext("%(server)s 연결이 없어졌습니다") % {"server": self.label})
            self.connect()
        assert self._transport is not None
        return self._transport

    # -- commands --------------------------------------------------------------------------
    def run(
        self,
        command: str,
        *,
        timeout: float,
        max_output: int = 64 * KiB,
        check_sanitizer: bool = True,
        raise_on_timeout: bool = False,
        shell: str | None = None,
    ) -> CommandResult:
        """Run one command in its own remote process group. ``shell``: the interpreter of the
        command text (default: the server's shell, bash on Linux; POSIX_SHELL for our own)."""
        if check_sanitizer:
            self._sanitized(command)
        transport = self._require()
        self._commands += 1
        if self.step_session and (self._commands >= self.supervise_from or self._steps is not None):
            return self._run_supervised(
                transport, command, shell or self.remote_shell, timeout, max_output, raise_on_timeout
            )
        # The command runs as the leader of a new process group; its first stderr line
        # tells us the group id, so a stop can kill the whole remote tree.
        inner = 'echo "GUARDIA_PGID=$$" >&2; ' + command
        wrapped = f"exec setsid -w {shell or self.remote_shell} -c {shlex.quote(inner)}"
        started = time.monotonic()
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(wrapped)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost_or_error(f"could not start a command on {self.label}", exc) from exc
        with self._lock:
            self._kill_requested = False
        try:
            return self._collect(channel, started, timeout, max_output, raise_on_timeout)
        finally:
            with self._lock:
                self._running_pgid = None
            channel.close()

    def _sanitized(self, command: str) -> None:
        """The sanitizer's check; a refusal is audited here and raised (nothing was sent)."""
        try:
            sanitizer.check(command)
        except SecurityViolation as exc:
            audit.record(
                None,
                "sanitizer.blocked",
                task=self.task,
                target=self.server.server_id,
                command=vault.redact(command)[:2000],
                payload={"reason": exc.reason, "pattern": exc.pattern},
            )
            raise

    def _collect(
        self, channel: paramiko.Channel, started: float, timeout: float, max_output: int, raise_on_timeout: bool
    ) -> CommandResult:
        out, err = bytearray(), bytearray()
        digest = hashlib.sha256()
        truncated = timed_out = False
        pgid: int | None = None
        looking_for_pgid = True
        exit_seen = 0.0
        deadline = started + timeout
        wakeup = _wakeup(channel)
        while True:
            while channel.recv_ready():
                chunk = channel.recv(65536)
                digest.update(chunk)
                room = max_output - len(out)
                truncated |= len(chunk) > room
                out += chunk[:room]
            while channel.recv_stderr_ready():
                chunk = channel.recv_stderr(65536)
                if looking_for_pgid:
                    err += chunk
                    match = PGID_RE.match(bytes(err))
                    if match:
                        pgid = int(match.group(1))
                        del err[: match.end()]
                        with self._lock:
                            self._running_pgid = pgid
                    # No marker on the first line (no setsid there?): keep stderr as it came.
                    looking_for_pgid = match is None and b"\n" not in err and len(err) < 64
                    continue
                room = max_output - len(err)
                truncated |= len(chunk) > room
                err += chunk[:room]
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                # sshd may send the exit status before the last output: wait for EOF too, but
                # not forever (a background child holding stdout open would never give one).
                if channel.eof_received or exit_seen and time.monotonic() - exit_seen > EOF_GRACE_SECONDS:
                    break
                exit_seen = exit_seen or time.monotonic()
            if not self.connected:
                raise ConnectionLost(LOST_WHILE_RUNNING % {"server": self.label, "pgid": pgid})
            now = time.monotonic()
            if now >= deadline and not timed_out:
                timed_out = True
                self._kill_group(pgid)
                deadline = now + KILL_GRACE_SECONDS + 3  # wait for the channel to report the end
            elif now >= deadline:
                break  # killed, but the channel never closed: give up waiting
            wait = min(0.5, max(0.0, deadline - now))
            if channel.eof_received or channel.closed:
                # All output is in (the wakeup stays set from now on, so waiting on it would
                # spin): only the exit status is missing.
                channel.status_event.wait(wait)
            else:
                _wait(channel, wakeup, wait)
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        if status == -1 and not self.connected:
            raise ConnectionLost(LOST_WHILE_RUNNING % {"server": self.label, "pgid": pgid})
        return self._result(status, out, err, started, digest, timed_out, truncated, pgid, raise_on_timeout)

    def _result(
        self, status, out, err, started: float, digest, timed_out: bool, truncated: bool, pgid, raise_on_timeout: bool
    ) -> CommandResult:
        with self._lock:
            killed = self._kill_requested
        result = CommandResult(
            exit_code=None if timed_out or status == -1 else status,
            stdout=bytes(out).decode(errors="replace"),
            stderr=bytes(err).decode(errors="replace"),
            duration=time.monotonic() - started,
            output_sha256=digest.hexdigest(),
            timed_out=timed_out,
            killed=killed,
            truncated=truncated,
            pgid=pgid,
        )
        if timed_out and raise_on_timeout:
            raise CommandTimeout(
                gettext("%(server)s에서 명령이 시간 초과되어 프로세스 그룹 %(pgid)s을(를) 종료했습니다")
                % {"server": self.label, "pgid": pgid},
                result,
            )
        return result

    # -- the step supervisor -------------------------------------------------------------
    def _supervisor(self, transport: paramiko.Transport) -> paramiko.Channel:
        channel = self._steps
        if channel is not None and not channel.closed and not channel.exit_status_ready():
            return channel
        self._end_steps()
        self._nonce = b"GUARDIA-END-" + secrets.token_hex(16).encode()
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(SUPERVISOR)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost_or_error(f"could not start the step supervisor on {self.label}", exc) from exc
        self._steps, self._leftover = channel, (b"", b"")
        self._steps_wakeup = _wakeup(channel)
        return channel

    def _end_steps(self) -> None:
        channel, self._steps = self._steps, None
        if channel is not None:
            try:
                channel.close()  # its shell reads EOF and ends; a running step was already killed or done
            except Exception:
                pass

    def _run_supervised(
        self,
        transport: paramiko.Transport,
        command: str,
        shell: str,
        timeout: float,
        max_output: int,
        raise_on_timeout: bool,
    ) -> CommandResult:
        if not SHELL_PATH_RE.match(shell):
            raise TransportError(f"not a shell path: {shell!r}")
        started = time.monotonic()
        channel = self._supervisor(transport)
        self._step_id += 1
        inner = shlex.quote('echo "GUARDIA_PGID=$$" >&2; ' + command)
        statement = STEP_STATEMENT.format(shell=shell, inner=inner, nonce=self._nonce.decode(), id=self._step_id)
        self._send_statement(channel, statement)
        out, err = self._framed(max_output, pgid_first=True)
        try:
            timed_out = self._until_end(channel, self._steps_wakeup, out, err, started + timeout)
        finally:
            with self._lock:
                self._running_pgid = None
        return self._framed_result(out, err, self._step_id, started, timed_out, raise_on_timeout)

    def _send_statement(self, channel: paramiko.Channel, statement: str) -> None:
        with self._lock:
            self._kill_requested = False
        try:
            channel.sendall(statement.encode())
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._end_steps()
            raise self._lost_or_error(f"could not start a command on {self.label}", exc) from exc

    def _framed(self, max_output: int, pgid_first: bool = False) -> tuple[_Framed, _Framed]:
        """The next step's two streams on the supervisor, fed first with what came after the last end."""
        marker = b"\n" + self._nonce + b" "
        out = _Framed(marker, max_output, hashlib.sha256())
        err = _Framed(marker, max_output, pgid_first=pgid_first)
        leftover, self._leftover = self._leftover, (b"", b"")
        if leftover[0]:
            out.feed(leftover[0])
        if leftover[1]:
            err.feed(leftover[1])
        return out, err

    def _until_end(
        self,
        channel: paramiko.Channel,
        wakeup: threading.Event,
        out: _Framed,
        err: _Framed,
        deadline: float,
        hold: threading.Event | None = None,
    ) -> bool:
        """Read both streams up to their end lines; True when the step timed out (its group is
        then killed). ``hold``: once set, the chain under way is told to start no further step."""
        timed_out = False
        while not (out.done and err.done):
            while channel.recv_ready():
                out.feed(channel.recv(65536))
            while channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(65536))
                if err.pgid is not None:
                    with self._lock:
                        self._running_pgid = err.pgid
            if out.done and err.done:
                break
            if (channel.eof_received or channel.closed or not self.connected) and not (
                channel.recv_ready() or channel.recv_stderr_ready()
            ):
                # The supervisor is gone mid-step: whether the step took effect is unknown.
                self._end_steps()
                raise ConnectionLost(LOST_WHILE_RUNNING % {"server": self.label, "pgid": self._running_pgid})
            early = False  # the hold came before the chain's shell told its group id
            if hold is not None and hold.is_set():
                with self._lock:
                    early = self._running_pgid is None
                if not early:
                    if not self._held:  # once a chain (a failed attempt is not repeated within this step)
                        self._held = self._signal_chain("USR1")
                    hold = None
            now = time.monotonic()
            if now >= deadline and not timed_out:
                timed_out = True
                self._kill_group(self._running_pgid)
                deadline = now + KILL_GRACE_SECONDS + 3  # wait for the supervisor to report the end
            elif now >= deadline:
                self._end_steps()  # killed, but no end came: this supervisor is not trusted again
                break
            # Waiting for a hold as well: a Hold wakes this wait when it is set; any other event is
            # looked at every 50 ms.
            look = 0.01 if early else 0.05 if hold is not None and not isinstance(hold, Hold) else 0.5
            _wait(channel, wakeup, min(look, max(0.0, deadline - now)), None if early else hold)
        self._leftover = (out.leftover, err.leftover)
        return timed_out

    def _framed_result(
        self, out: _Framed, err: _Framed, step_id: int, started: float, timed_out: bool, raise_on_timeout: bool = False
    ) -> CommandResult:
        """The step's result from its end line (``<id> <status>``); -1 when another id ended it."""
        ended, _, status = out.trailer.partition(b" ")
        code = int(status) if out.done and ended == b"%d" % step_id and status.isdigit() else -1
        return self._result(
            code,
            out.kept,
            err.kept,
            started,
            out.digest,
            timed_out,
            out.truncated or err.truncated,
            err.pgid,
            raise_on_timeout,
        )

    # -- chains ----------------------------------------------------------------------------
    def run_chain(self, steps: list[ChainStep], *, on_result=None, hold: threading.Event | None = None):
        """Run ``steps`` as one program on the server (CHAIN_STEP): one write on the supervisor
        (or one channel), one process group for all of them, no round trip between two steps.

        Every command passes the sanitizer before anything is sent; a refusal names its step
        (``exc.chain_index``) and nothing runs. The server starts a step only when the one before
        ended with one of its ``ok_codes`` and no hold came: ``hold`` (the run's stop) is passed
        on to the program as soon as it is set, and kill_running() kills the group, the step under
        way and the rest with it. Each step's timeout counts from the end of the one before.
        ``on_result(index, result)`` is called as each step ends. Returns the results of the steps
        that ran, in order (fewer than ``steps`` when one failed, timed out, was killed or held).
        A connection lost mid-chain raises ConnectionLost with ``chain_index``, the step under way
        (the server may have gone on to the steps after it)."""
        for index, step in enumerate(steps):
            shell = step.shell or self.remote_shell
            if not SHELL_PATH_RE.match(shell):
                raise TransportError(f"not a shell path: {shell!r}")
            try:
                self._sanitized(step.command)
            except SecurityViolation as exc:
                exc.chain_index = index  # type: ignore[attr-defined]
                raise
        transport = self._require()
        self._commands += len(steps)
        started = time.monotonic()
        if self.step_session:
            channel, wakeup = self._supervisor(transport), self._steps_wakeup
        else:
            channel, wakeup = self._chain_channel(transport), None
        first = self._step_id + 1
        self._step_id += len(steps) + 1
        end = self._step_id
        nonce = self._nonce.decode()
        parts = [CHAIN_START]
        for index, step in enumerate(steps):
            if index:
                parts.append(CHAIN_CONTINUE.format(codes=" ".join(map(str, sorted(set(steps[index - 1].ok_codes))))))
            command = shlex.quote(step.command)
            parts.append(
                CHAIN_STEP.format(shell=step.shell or self.remote_shell, command=command, nonce=nonce, id=first + index)
            )
        program = shlex.quote("; ".join(parts))
        statement = (
            f"setsid -w {POSIX_SHELL} -c {program} </dev/null; rc=$?; " + END_LINES.format(nonce=nonce, id=end) + "\n"
        )
        results: list[CommandResult] = []
        self._held = False
        try:
            if wakeup is None:
                self._exec_chain(channel, statement)
                wakeup = _wakeup(channel)
            else:
                self._send_statement(channel, statement)
            with hold.watching(wakeup) if isinstance(hold, Hold) else contextlib.nullcontext():
                self._read_chain(steps, channel, wakeup, hold, first, end, started, on_result, results)
        except BaseException:
            if self.step_session:
                self._end_steps()  # what is left of the chain's output must not reach the next step
            raise
        finally:
            with self._lock:
                self._running_pgid = None
            if not self.step_session:
                channel.close()
        return results

    def _read_chain(
        self, steps, channel, wakeup, hold, first: int, end: int, started: float, on_result, results
    ) -> None:
        """run_chain's reading: each step's end line as it comes, then the chain's own."""
        ended = b""
        for index, step in enumerate(steps):
            out, err = self._framed(step.max_output, pgid_first=not index)
            try:
                timed_out = self._until_end(channel, wakeup, out, err, started + step.timeout, hold)
            except ConnectionLost as exc:
                exc.chain_index = index  # type: ignore[attr-defined]
                raise
            if index:
                err.pgid = results[0].pgid
            result = self._framed_result(out, err, first + index, started, timed_out)
            ended = out.trailer.partition(b" ")[0]
            ran = ended == b"%d" % (first + index)
            # Ended by the chain's own end line: killed, timed out, or held before it began;
            # otherwise the program died some other way under it (a failure, exit status unknown).
            if ran or timed_out or result.killed or not self._held:
                results.append(result)
                if on_result is not None:
                    on_result(index, result)
            if not ran or not result.ok_for(step.ok_codes):
                break
            started = time.monotonic()
        if ended != b"%d" % end and not channel.closed:
            self._finish_chain(channel, wakeup, end)

    def _finish_chain(self, channel: paramiko.Channel, wakeup: threading.Event, end: int) -> None:
        """Read up to the chain's own end line, so the supervisor's next step starts clean (after a
        step that failed, the program ends at once). No end line within the grace: the supervisor
        is not used again."""
        out, err = self._framed(0)
        self._until_end(channel, wakeup, out, err, time.monotonic() + KILL_GRACE_SECONDS + 5)
        if not (out.done and out.trailer.partition(b" ")[0] == b"%d" % end):
            self._end_steps()

    def _chain_channel(self, transport: paramiko.Transport) -> paramiko.Channel:
        self._nonce = b"GUARDIA-END-" + secrets.token_hex(16).encode()
        self._leftover = (b"", b"")
        try:
            return transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost_or_error(f"could not start a command on {self.label}", exc) from exc

    def _exec_chain(self, channel: paramiko.Channel, statement: str) -> None:
        with self._lock:
            self._kill_requested = False
        try:
            channel.exec_command(f"exec {POSIX_SHELL} -c {shlex.quote(statement)}")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost_or_error(f"could not start a command on {self.label}", exc) from exc

    def _signal_chain(self, signal: str) -> bool:
        """Send ``signal`` to the running chain's own shell (its group leader), not to its steps."""
        with self._lock:
            pgid = self._running_pgid
        transport = self._transport
        if not pgid or transport is None or not self.connected:
            return False
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(f"kill -s {signal} {int(pgid)} 2>/dev/null; exit 0")
            channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, EOFError, OSError):
            return False
        return True

    def _kill_group(self, pgid: int | None) -> bool:
        """TERM the remote process group, KILL it after a grace period. Returns False if we could not."""
        transport = self._transport
        if not pgid or transport is None or not self.connected:
            return False
        # POSIX spelling (kill -s SIG -- -PGID): the login shell may be dash or ksh, not bash.
        script = (
            f"kill -s TERM -- -{pgid} 2>/dev/null || exit 0; "
            f"for i in $(seq 1 {int(KILL_GRACE_SECONDS * 10)}); do kill -s 0 -- -{pgid} 2>/dev/null || exit 0; "
            f"sleep 0.1; done; kill -s KILL -- -{pgid} 2>/dev/null; exit 0"
        )
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(script)
            channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, EOFError, OSError):
            return False
        return True

    def kill_running(self) -> bool:
        """Kill the remote process group of the command now running and cancel every upload
        running beside it (kill switch)."""
        with self._lock:
            pgid = self._running_pgid
            self._kill_requested = pgid is not None
            uploads = list(self._uploads)
        for upload in uploads:
            upload.cancelled.set()  # its thread stops before the next chunk and removes the partial file
        return self._kill_group(pgid)

    # -- files -----------------------------------------------------------------------------
    def _sftp_client(self) -> paramiko.SFTPClient:
        transport = self._require()
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
                if self._sftp is None:  # paramiko could not open the session channel
                    raise paramiko.SSHException("no SFTP channel")
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._lost_or_error(f"SFTP to {self.label} failed", exc) from exc
        return self._sftp

    def put(self, local: str | os.PathLike | bytes, remote_path: str) -> str:
        """Upload, verify SHA-256 on the server, then move into place. Returns the hex digest."""
        partial = remote_path + PARTIAL_SUFFIX
        expected = self._send(local, partial, None)
        try:
            self.verify_remote_sha256(partial, expected, move_to=remote_path)
        except TransportError:
            self._remove_quietly(partial)
            raise
        return expected

    def start_put(self, local: str | os.PathLike | bytes, remote_path: str) -> Upload:
        """The transfer of ``put`` to ``remote_path``'s partial name, on its own SFTP channel and
        thread, while this connection's supervisor runs other steps. Nothing is moved: the hash
        check and the move are ``hash_and_move``, a step of their own once the caller decides.
        ``kill_running`` (the kill switch) cancels it between two chunks."""
        upload = Upload(self, local, remote_path)
        with self._lock:
            self._uploads.append(upload)
        upload.start()
        return upload

    def _send(self, local: str | os.PathLike | bytes, partial: str, cancelled: threading.Event | None) -> str:
        """Write ``local`` to ``partial`` over SFTP; its SHA-256 as hex. On any failure (or
        ``cancelled`` set) the partial file is removed and TransportError raised."""
        sftp = self._sftp_client()
        digest = hashlib.sha256()
        try:
            source = io.BytesIO(local) if isinstance(local, bytes) else open(local, "rb")
        except OSError as exc:
            raise TransportError(
                gettext("%(path)s을(를) 읽을 수 없습니다: %(error)s") % {"path": os.fsdecode(local), "error": exc}
            ) from exc
        try:
            with source, sftp.open(partial, "wb") as remote:
                remote.set_pipelined(True)
                while chunk := source.read(256 * KiB):
                    if cancelled is not None and cancelled.is_set():
                        raise UploadCancelled(f"upload of {partial} to {self.label} cancelled")
                    digest.update(chunk)
                    remote.write(chunk)
        except UploadCancelled:
            self._remove_quietly(partial)
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._remove_quietly(partial)
            raise self._lost_or_error(f"upload of {partial} to {self.label} failed", exc) from exc
        return digest.hexdigest()

    def verify_remote_sha256(self, remote_path: str, expected: str, *, move_to: str | None = None) -> None:
        """Hash the file on the server (sha256sum) and compare; raise TransportError if it differs.

        With ``move_to`` the same command then moves the file there, only if the server's hash is
        the expected one (one round trip instead of a second one for an SFTP rename); the hash it
        printed is compared here all the same."""
        if move_to is not None:
            command = hash_and_move(remote_path, expected, move_to)
        else:
            command = f"sha256sum -- {shlex.quote(remote_path)}"
        check = self.run(command, timeout=120, shell=POSIX_SHELL)
        self.judge_hash(check, remote_path, expected, moved=move_to is not None)

    def judge_hash(self, check: CommandResult, remote_path: str, expected: str, *, moved: bool) -> None:
        """Raise TransportError unless ``check`` (the output of ``hash_and_move`` or of a bare
        sha256sum) printed ``expected`` and, when it was to move the file, exited 0."""
        words = check.stdout.split()
        found = words[0] if words and (check.exit_code == 0 or moved) else ""
        if not hmac.compare_digest(found, expected):
            raise TransportError(
                f"SHA-256 mismatch on {self.label}:{remote_path}: "
                f"expected {expected}, server has {found or check.stderr.strip()[:200]}"
            )
        if check.exit_code != 0:
            raise TransportError(
                f"could not move {remote_path} into place on {self.label}: "
                f"{check.stderr.strip()[:200] or f'exit status {check.exit_code}'}"
            )

    def get(self, remote_path: str, *, max_bytes: int = 64 * 1024 * KiB) -> bytes:
        sftp = self._sftp_client()
        try:
            with sftp.open(remote_path, "rb") as remote:
                remote.prefetch()
                data = remote.read(max_bytes + 1)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost_or_error(f"download of {remote_path} from {self.label} failed", exc) from exc
        if len(data) > max_bytes:
            raise TransportError(f"{remote_path} on {self.label} is larger than {max_bytes} bytes")
        return data

    def _remove_quietly(self, path: str) -> None:
        try:
            if self._sftp is not None and self.connected:
                self._sftp.remove(path)
        except (paramiko.SSHException, EOFError, OSError):
            pass

    def _lost_or_error(self, what: str, exc: BaseException) -> TransportError:
        if not self.connected:
            return ConnectionLost(f"{what}: connection lost ({exc})")
        return TransportError(f"{what}: {exc}")
