"""The two onion services, as Tor sees them: torrc lines, client authorization, health.

The source interface is published as a public onion service with Tor's proof-of-work
defence; the newsroom interface gets an onion service of its own that only Tor Browsers
holding an x25519 client key can reach (Tor's "client authorization"). Nothing here
imports Click or Flask: the ``tipbox onion`` commands and ``tipbox doctor`` print what
these functions return.

Tor's formats (tor's own specification, "Client authorization"):

- ``HiddenServiceDir/authorized_clients/NAME.auth`` holds one line,
  ``descriptor:x25519:<public key>``;
- the client's half is one line, ``<address without .onion>:descriptor:x25519:<private
  key>``, the form of a ``ClientOnionAuthDir`` file that Tor Browser also accepts;
- both keys are the 32 raw bytes in base32, upper case, without padding.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tipbox.errors import TipboxError

# Debian's tor keeps its state, and so our two services' folders, here.
DEFAULT_TOR_DIR = Path("/var/lib/tor")
# Debian's tor writes its process id here (/usr/share/tor/tor-service-defaults-torrc).
DEFAULT_TOR_PID_FILE = Path("/run/tor/tor.pid")
SOURCE_SERVICE = "tipbox"  # the folder name the admin guide has always used
NEWSROOM_SERVICE = "tipbox-newsroom"
ONION_PORT = 80  # what Tor Browser asks for when the address has no port

_HOSTNAME = re.compile(r"[a-z2-7]{56}\.onion")
# A journalist's name becomes a file name in tor's folder: keep it to a plain word.
_CLIENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class OnionError(TipboxError):
    """An onion configuration or client key that tipbox refuses; the message says why
    and what to do instead."""


@dataclass(frozen=True)
class OnionLayout:
    """Where the two services live and which local ports they lead to."""

    tor_dir: Path = DEFAULT_TOR_DIR
    source_port: int = 8080
    newsroom_port: int = 8081
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for name in ("source_port", "newsroom_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise OnionError(f"The {name.replace('_', ' ')} must be between 1 and 65535, "
                                 f"got {port}.")
        if self.source_port == self.newsroom_port:
            # The sources' address would then lead to the newsroom interface.
            raise OnionError(
                f"The source and newsroom interfaces cannot share port {self.source_port}: "
                "that would put the newsroom interface on the sources' onion service. Give "
                "each its own port (`tipbox serve source --port 8080`, `tipbox serve "
                "newsroom --port 8081`).")

    @property
    def source_dir(self) -> Path:
        return self.tor_dir / SOURCE_SERVICE

    @property
    def newsroom_dir(self) -> Path:
        return self.tor_dir / NEWSROOM_SERVICE

    @property
    def clients_dir(self) -> Path:
        return self.newsroom_dir / "authorized_clients"


# --- torrc ----------------------------------------------------------------------------

def torrc_lines(layout: OnionLayout) -> str:
    """The torrc lines for both services, checked by the same rules as a hand-written torrc."""
    source = f"{layout.host}:{layout.source_port}"
    newsroom = f"{layout.host}:{layout.newsroom_port}"
    text = "\n".join([
        "# tipbox: written by `tipbox onion torrc`; see docs/admin-guide.md, section 3.",
        "# Lets the group (debian-tor) enter tor's folder, so that `tipbox doctor`, run with",
        "# that group, can see each service's hostname and authorized clients. Secret keys",
        "# stay readable by tor alone.",
        "DataDirectoryGroupReadable 1",
        "",
        "# The sources' onion service: the source interface only, on port 80.",
        f"HiddenServiceDir {layout.source_dir}",
        "HiddenServiceDirGroupReadable 1",
        f"HiddenServicePort {ONION_PORT} {source}",
        "# Tor's flood defence: under attack, clients solve a puzzle before they get in.",
        "HiddenServicePoWDefensesEnabled 1",
        "",
        "# The newsroom's onion service: only Tor Browsers holding a client key from",
        "# `tipbox onion add-journalist` can reach it.",
        f"HiddenServiceDir {layout.newsroom_dir}",
        "HiddenServiceDirGroupReadable 1",
        f"HiddenServicePort {ONION_PORT} {newsroom}",
        "",
    ])
    problems = torrc_problems(parse_torrc(text), layout)
    if problems:  # a bug here, not the admin's: never hand out a torrc we would refuse
        raise OnionError(" ".join(problems))
    return text


@dataclass(frozen=True)
class TorrcService:
    """One ``HiddenServiceDir`` of a torrc with what follows it."""

    directory: Path
    # (onion port, target) in the order written; the target as tor reads it.
    ports: tuple[tuple[int, str], ...] = ()
    pow_defenses: bool = False


def parse_torrc(text: str) -> list[TorrcService]:
    """The onion services a torrc declares (``%include`` is not followed)."""
    services: list[TorrcService] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        key, args = words[0].lower(), words[1:]
        if key == "hiddenservicedir" and args:
            services.append(TorrcService(Path(args[0].rstrip("/") or "/")))
        elif key == "hiddenserviceport" and args and services:
            last = services[-1]
            services[-1] = TorrcService(last.directory,
                                        (*last.ports, _port_line(args, raw)), last.pow_defenses)
        elif key == "hiddenservicepowdefensesenabled" and args and services:
            last = services[-1]
            services[-1] = TorrcService(last.directory, last.ports, args[0] == "1")
    return services


def read_torrc(path: Path, depth: int = 0) -> str:
    """A torrc's text with each ``%include`` (a file, a folder's files, a pattern) put in
    its place, as tor reads it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OnionError(f"Cannot read {path} ({exc.strerror}): check the path, or run as "
                         "root.") from None
    if depth > 8:  # tor stops at the same depth; a loop would never end
        raise OnionError(f"{path}: %include nests too deep; does a file include itself?")
    parts: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["%include"] and len(words) > 1:
            parts.extend(read_torrc(p, depth + 1) for p in _included(Path(words[1])))
        else:
            parts.append(line)
    return "\n".join(parts)


def _included(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and not p.name.startswith("."))
    if any(c in target.name for c in "*?["):
        return sorted(p for p in target.parent.glob(target.name) if p.is_file())
    return [target]


def _port_line(args: Sequence[str], raw: str) -> tuple[int, str]:
    try:
        virtual = int(args[0])
    except ValueError:
        raise OnionError(f"Cannot read this torrc line: {raw.strip()!r}. HiddenServicePort "
                         "takes a port number, then where it leads.") from None
    # Without a target tor uses the same port on 127.0.0.1.
    target = args[1] if len(args) > 1 else f"127.0.0.1:{virtual}"
    if target.isdigit():
        target = f"127.0.0.1:{target}"
    return virtual, target


def torrc_problems(services: Sequence[TorrcService], layout: OnionLayout, *,
                   ports_known: bool = True) -> list[str]:
    """What is wrong with the two services in a torrc, each with what to do about it.

    Without ``ports_known`` (`tipbox doctor`, which is not told where the interfaces
    listen), the newsroom interface is wherever the newsroom's service leads."""
    problems: list[str] = []
    by_dir: dict[Path, TorrcService] = {}
    for service in services:
        if service.directory in by_dir:
            problems.append(f"HiddenServiceDir {service.directory} appears twice: keep one.")
        by_dir[service.directory] = service
        virtual = [port for port, _ in service.ports]
        for port in sorted({p for p in virtual if virtual.count(p) > 1}):
            problems.append(f"Port {port} appears twice in the onion service "
                            f"{service.directory}: keep one HiddenServicePort line for it.")
    source, newsroom = by_dir.get(layout.source_dir), by_dir.get(layout.newsroom_dir)
    if source is None:
        problems.append(f"No onion service for the sources ({layout.source_dir}): add the "
                        "lines `tipbox onion torrc` prints.")
    if newsroom is None:
        problems.append(f"No onion service for the newsroom ({layout.newsroom_dir}): add the "
                        "lines `tipbox onion torrc` prints.")
    if source is not None:
        problems.extend(_source_service_problems(source, newsroom, layout, ports_known))
    return problems


def _source_service_problems(source: TorrcService, newsroom: TorrcService | None,
                             layout: OnionLayout, ports_known: bool) -> list[str]:
    problems: list[str] = []
    newsroom_targets = {_local(t) for _, t in newsroom.ports} if newsroom else set()
    if ports_known:
        newsroom_targets.add(_local(f"{layout.host}:{layout.newsroom_port}"))
    for port, target in source.ports:
        if _local(target) in newsroom_targets:
            problems.append(
                f"The sources' onion service ({source.directory}) leads port {port} to "
                f"{target}, the newsroom interface: anyone with the public address could "
                "reach it. Remove that HiddenServicePort line; the newsroom interface "
                "belongs on its own onion service with client authorization.")
    if ports_known and (ONION_PORT, _local(f"{layout.host}:{layout.source_port}")) not in {
            (p, _local(t)) for p, t in source.ports}:
        problems.append(f"The sources' onion service ({source.directory}) does not lead port "
                        f"{ONION_PORT} to the source interface "
                        f"({layout.host}:{layout.source_port}).")
    if not source.pow_defenses:
        problems.append(f"The sources' onion service ({source.directory}) lacks "
                        "`HiddenServicePoWDefensesEnabled 1`, Tor's flood defence.")
    return problems


def _local(target: str) -> str:
    """A target in one spelling: localhost and 127.0.0.1 are the same interface."""
    return target.replace("localhost:", "127.0.0.1:").replace("[::1]:", "127.0.0.1:")


# --- client authorization -------------------------------------------------------------

@dataclass(frozen=True)
class ClientCredential:
    """A journalist's new key: the line to hand over once. tipbox keeps no copy."""

    name: str
    auth_file: Path
    private_line: str = field(repr=False)


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def add_client(layout: OnionLayout, name: str) -> ClientCredential:
    """Make an x25519 key pair for ``name``: its public half goes into the newsroom
    service's ``authorized_clients/``, its private half comes back, once."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    name = check_client_name(name)
    address = read_hostname(layout.newsroom_dir).removesuffix(".onion")
    clients = _existing_clients_dir(layout)
    auth_file = clients / f"{name}.auth"
    key = X25519PrivateKey.generate()
    public = _b32(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    private = _b32(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    try:
        # O_EXCL: a second key under the same name would silently replace the first.
        fd = os.open(auth_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OnionError(f"{name} already has a client key ({auth_file}). To give them a "
                         f"new one, `tipbox onion revoke {name}` first.") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(f"descriptor:x25519:{public}\n")
        out.flush()
        os.fsync(out.fileno())
    _give_to_tor(auth_file, clients)
    return ClientCredential(name, auth_file, f"{address}:descriptor:x25519:{private}")


def _give_to_tor(path: Path, clients: Path) -> None:
    """Run as root, the file would be root's and tor (its own user) could not read it."""
    owner = clients.stat()
    if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
        os.chown(path, owner.st_uid, owner.st_gid)


def revoke_client(layout: OnionLayout, name: str) -> Path:
    """Remove ``name``'s public key; tor forgets the client at its next reload."""
    name = check_client_name(name)
    auth_file = _existing_clients_dir(layout) / f"{name}.auth"
    try:
        auth_file.unlink()
    except FileNotFoundError:
        raise OnionError(f"No client key named {name} in {auth_file.parent}: `tipbox onion "
                         "list` shows them all.") from None
    return auth_file


def list_clients(layout: OnionLayout) -> list[str]:
    """The names of the newsroom service's authorized clients."""
    return sorted(p.name.removesuffix(".auth") for p in _existing_clients_dir(layout).iterdir()
                  if p.name.endswith(".auth"))


def check_client_name(name: str) -> str:
    lowered = name.lower()
    if not _CLIENT_NAME.fullmatch(lowered):
        raise OnionError(f"{name!r} cannot name a client key: use letters, digits, '-' and "
                         "'_' (up to 63), starting with a letter or digit, e.g. the "
                         "journalist's username.")
    return lowered


def _existing_clients_dir(layout: OnionLayout) -> Path:
    clients = layout.clients_dir
    try:
        if clients.is_dir():
            return clients
    except PermissionError:
        pass
    else:
        raise OnionError(f"{clients} does not exist yet: add the lines `tipbox onion torrc` "
                         "prints to tor's configuration and restart tor, which creates it.")
    raise OnionError(f"Cannot open {clients}: run this command as root (sudo).")


def read_hostname(service_dir: Path) -> str:
    """A service's ``.onion`` address, as tor wrote it."""
    path = service_dir / "hostname"
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise OnionError(f"{path} does not exist: tor has not created this onion service. "
                         "Check that tor's configuration has the lines `tipbox onion torrc` "
                         "prints, restart tor and read its log.") from None
    except PermissionError:
        raise OnionError(f"Cannot read {path} as this user. Run as root, or give this user "
                         "tor's group (the units in deploy/ do) with the torrc of `tipbox "
                         "onion torrc`, which makes the hostname group-readable.") from None
    if not _HOSTNAME.fullmatch(text):
        raise OnionError(f"{path} does not hold an onion address; tor writes it. Remove the "
                         "file and restart tor.")
    return text


# --- health, for `tipbox doctor` -------------------------------------------------------

@dataclass(frozen=True)
class OnionHealth:
    notes: tuple[str, ...]
    problems: tuple[str, ...]


def onion_health(layout: OnionLayout, pid_file: Path, torrc: Path | None = None) -> OnionHealth:
    """Whether tor runs, each service has its address and the newsroom one a client."""
    notes: list[str] = []
    problems: list[str] = []
    running = tor_pid(pid_file)
    if running is None:
        problems.append(f"tor is not running (no live tor process in {pid_file}): start it "
                        "(`sudo systemctl start tor`) and read its log (`sudo journalctl -u "
                        "tor@default`).")
    else:
        notes.append(f"tor runs (process {running}).")
    for label, service in (("sources'", layout.source_dir), ("newsroom's", layout.newsroom_dir)):
        try:
            notes.append(f"The {label} onion service: {read_hostname(service)}")
        except OnionError as exc:
            problems.append(f"The {label} onion service has no address. {exc}")
    try:
        clients = list_clients(layout)
    except OnionError as exc:
        problems.append(f"Cannot see the newsroom service's authorized clients. {exc}")
    else:
        if clients:
            notes.append(f"{len(clients)} client key(s) for the newsroom's onion service: "
                         + ", ".join(clients))
        else:
            problems.append("The newsroom's onion service has no authorized client, so tor "
                            "lets anyone who learns its address reach the log-in page: `tipbox "
                            "onion add-journalist NAME`, then `sudo systemctl reload tor`.")
    if torrc is not None:
        problems.extend(_torrc_file_problems(torrc, layout))
    return OnionHealth(tuple(notes), tuple(problems))


def _torrc_file_problems(torrc: Path, layout: OnionLayout) -> Iterable[str]:
    try:
        text = read_torrc(torrc)
    except OnionError as exc:
        return [str(exc)]
    try:
        return [f"{torrc}: {p}" for p in torrc_problems(parse_torrc(text), layout,
                                                         ports_known=False)]
    except OnionError as exc:
        return [f"{torrc}: {exc}"]


def tor_pid(pid_file: Path) -> int | None:
    """The process id in tor's pid file, if that process is alive and is tor."""
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
        comm = Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "tor" else None
