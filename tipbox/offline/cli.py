"""The ``tipbox-open`` command line (also ``python -m tipbox.offline``)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from tipbox import __version__
from tipbox.crypto.gpg import GnuPG
from tipbox.errors import KeyringUnusable
from tipbox.offline import keys
from tipbox.offline.decrypt import Decryptor, Passphrases
from tipbox.offline.errors import BundleRefused, Refused
from tipbox.offline.index import summary, write_index
from tipbox.offline.limits import EXPANSION_FLOOR, MAX_EXPANSION, MIB, RESERVED_BYTES, Limits
from tipbox.offline.opener import Opener
from tipbox.offline.progress import Progress

ALL_DECRYPTED, INCOMPLETE, REFUSED = 0, 1, 2
MAX_PASSPHRASE_BYTES = 4096

_OPEN_HELP = f"""\
Check an export bundle against its manifest and decrypt every item with the local GnuPG
keyring. In DIR: one folder per source designation, holding NN-message.txt,
NN-reply.txt and NN-<original file name> (NN is the item's sequence number), and
index.txt listing every item with what became of it. Nothing is ever overwritten: a name
that is taken gets " (2)". Decrypted files are readable by you only (mode 0600).

A bundle that is damaged or hostile (odd member names, links, devices, sizes beyond the
file or the free space, a bad manifest) is refused before anything is written.

Passphrase: if the secret key has one, gpg-agent asks with its usual dialog; where it
cannot, tipbox-open asks in the terminal. --passphrase-fd N reads it from file
descriptor N instead (one line), e.g. `--passphrase-fd 3 3<passphrase-file`.

An item that decompresses to more than --max-expansion times its encrypted size plus
{EXPANSION_FLOOR // MIB} MiB (default: {MAX_EXPANSION} times) is refused as a likely
compression bomb, and the bundle stops rather than leave less than {RESERVED_BYTES // MIB} MiB
free on the disk: index.txt says so on each item's line.

--scrub: after decrypting, run mat2 on each decrypted file and write a metadata-free
copy next to it as NN-name.cleaned.ext. The ORIGINAL IS KEPT: its metadata can be what
proves a document genuine, and it can also identify the source, so share only the
.cleaned copy. A file mat2 could not clean is marked NOT scrubbed in index.txt. mat2's
temporary files stay inside DIR and are removed. Without mat2 on PATH, --scrub says so
and changes nothing else.

Exit status: 0 every item was decrypted; 1 some items could not be decrypted (a missing
key, a failure, an item that did not match the manifest: see index.txt); 2 the bundle
was refused, or the command line was wrong.

Key management on this machine: tipbox-open keys --help"""

_KEYS_HELP = """\
generate  make the newsroom key pair here (Ed25519 + Cv25519, or RSA-4096 with --rsa;
          expires after 2 years) and export its public key for the server
prove     decrypt a challenge from `tipbox keys challenge` and print its code"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tipbox-open``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # python-gnupg logs gpg's non-zero exits and broken pipes; tipbox-open reports them.
    gnupg_log = logging.getLogger("gnupg")
    gnupg_log.addHandler(logging.NullHandler())
    gnupg_log.propagate = False
    # Plaintext and keys are for the journalist's eyes only.
    os.umask(0o077)
    # A plain `kill`, or closing the terminal, then cleans up like Ctrl-C: no ciphertext
    # copy, partial plaintext or mat2 temporary file is left in the work folder (mat2
    # runs in its own session, so only tipbox-open can stop it).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        if args[:1] == ["keys"]:
            return _keys(args[1:])
        return _open(args)
    except BundleRefused as exc:
        _error(f"{exc}\nNothing was written. If the bundle came straight from the newsroom "
               "interface, download it again; if that fails too, tell whoever runs the "
               "server: a server that makes bundles like this may be compromised.")
        return REFUSED
    except (Refused, KeyringUnusable) as exc:
        _error(str(exc))
        return REFUSED
    except OSError as exc:
        _error(f"{exc.filename or 'a file'}: {exc.strerror or exc}. Check that the --out "
               "folder can be written and has free space.")
        return REFUSED
    except KeyboardInterrupt:
        _error("interrupted.")
        return INCOMPLETE


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _open(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tipbox-open", description=_OPEN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, metavar="BUNDLE",
                        help="the tipbox-<id>.tar file downloaded from the newsroom interface")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder to write into (created if needed; may hold earlier "
                             "results)")
    _common(parser)
    parser.add_argument("--scrub", action="store_true",
                        help="also write a metadata-free copy of each file with mat2 (see "
                             "above; the original is kept)")
    parser.add_argument("--max-expansion", type=_expansion, default=MAX_EXPANSION,
                        metavar="N",
                        help=f"refuse an item that decompresses to more than N times its "
                             f"encrypted size plus {EXPANSION_FLOOR // MIB} MiB, as a likely "
                             f"compression bomb (default {MAX_EXPANSION}); also bounds what "
                             "mat2 may unpack")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines; only problems are reported")
    parser.add_argument("--version", action="version", version=f"tipbox-open {__version__}")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} exists and is not a folder: choose a folder.")
    home = _home(args.gnupghome)
    gpg = GnuPG.existing_home(home)
    secret_keys = gpg.list_keys(secret=True)
    if not secret_keys:
        raise Refused(f"The GnuPG home {home} holds no secret key, so nothing could be "
                      "decrypted. Use --gnupghome to point at the home with the newsroom "
                      "secret key, or import it there.")
    decryptor = Decryptor(gpg, _passphrases(args.passphrase_fd))
    progress = Progress(None if args.quiet else sys.stderr, 0)
    limits = Limits(max_expansion=args.max_expansion)
    result = Opener(out, decryptor, secret_keys, limits).run(args.bundle, progress, args.scrub)
    index = write_index(result, out, home, dt.date.today().isoformat())
    complete = result.complete and not result.interrupted
    if not (args.quiet and complete):
        sys.stderr.write(f"tipbox-{result.bundle_id} opened into {out}: {summary(result)}\n"
                         f"Index: {index}\n")
    if result.mat2_missing:
        _error("--scrub: mat2 is not installed, so no metadata was removed. Install it "
               "(Debian: apt-get install mat2; carry the packages over) and open the bundle "
               "again, or run mat2 on the files yourself.")
    return ALL_DECRYPTED if complete else INCOMPLETE


def _expansion(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 1000000")
    return value


def _keys(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tipbox-open keys", description=_KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = commands.add_parser("generate", help="make the newsroom key pair on this machine")
    _common(gen)
    gen.add_argument("--name", default=keys.DEFAULT_NAME, help="the key's name")
    gen.add_argument("--email", default=keys.DEFAULT_EMAIL, help="the key's email address")
    gen.add_argument("--rsa", action="store_true", help="RSA-4096 instead of Ed25519/Cv25519")
    gen.add_argument("--expire", default="2y", help="validity: 2y (default), 18m, 90d, a day")
    gen.add_argument("--out", type=Path, metavar="PUBFILE",
                     help="where to write the public key (default: newsroom-<key id>.asc)")
    prove = commands.add_parser("prove", help="print the code of a server challenge")
    prove.add_argument("challenge", type=Path, metavar="CHALLENGE_FILE")
    _common(prove)
    args = parser.parse_args(argv)
    home = _home(args.gnupghome)
    if args.command == "generate":
        passphrase = _new_passphrase(args.passphrase_fd)
        request = keys.KeyRequest(args.name, args.email, args.rsa, args.expire, passphrase)
        keys.generate(home, request, args.out, sys.stdout)
        return ALL_DECRYPTED
    decryptor = Decryptor(GnuPG.existing_home(home), _passphrases(args.passphrase_fd))
    code, fpr = keys.prove(args.challenge, decryptor)
    sys.stdout.write(code + "\n")
    sys.stderr.write(f"Decrypted with key {fpr or '(unknown)'}. On the server, run\n"
                     f"  tipbox keys activate {fpr or 'FINGERPRINT'} --proof {code}\n")
    return ALL_DECRYPTED


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gnupghome", type=Path, metavar="DIR",
                        help="GnuPG home with the newsroom secret key (default: $GNUPGHOME, "
                             "else ~/.gnupg)")
    parser.add_argument("--passphrase-fd", type=int, metavar="N",
                        help="read the secret key's passphrase from file descriptor N")


def _home(option: Path | None) -> Path:
    if option is not None:
        return option.expanduser()
    env = os.environ.get("GNUPGHOME")
    return Path(env).expanduser() if env else Path.home() / ".gnupg"


def _passphrases(fd: int | None) -> Passphrases:
    if fd is not None:
        return Passphrases(read_passphrase_fd(fd), prompt=None)
    prompt: Callable[[str], str] | None = _prompt if sys.stdin.isatty() else None
    return Passphrases(None, prompt)


def _prompt(text: str) -> str:
    sys.stderr.write("\n")
    return getpass.getpass(text, stream=sys.stderr)


def _new_passphrase(fd: int | None) -> str:
    if fd is not None:
        passphrase = read_passphrase_fd(fd)
        keys.check_passphrase(passphrase)
        return passphrase
    if not sys.stdin.isatty():
        raise Refused("The new key needs a passphrase: run this in a terminal, or give it "
                      "with --passphrase-fd N.")
    first = getpass.getpass("Passphrase for the new newsroom key: ", stream=sys.stderr)
    keys.check_passphrase(first)
    if getpass.getpass("The same passphrase again: ", stream=sys.stderr) != first:
        raise Refused("The two passphrases differ: nothing was created. Run the command again.")
    if len(first) < 16:
        sys.stderr.write("Note: a passphrase of five or more random words is much harder "
                         "to guess than a short one.\n")
    return first


def read_passphrase_fd(fd: int) -> str:
    """The first line read from file descriptor ``fd`` (which is then closed)."""
    try:
        with os.fdopen(fd, "rb") as fh:
            line = fh.readline(MAX_PASSPHRASE_BYTES + 1)
    except OSError as exc:
        raise Refused(f"Cannot read a passphrase from file descriptor {fd}: {exc.strerror}. "
                      f"Open it in the shell, e.g. `--passphrase-fd {fd} {fd}<file`.") from exc
    if len(line) > MAX_PASSPHRASE_BYTES:
        raise Refused(f"File descriptor {fd} holds no passphrase line (it is too long).")
    try:
        passphrase = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise Refused(f"The passphrase read from file descriptor {fd} is not UTF-8.") from exc
    if not passphrase or any(ch in passphrase for ch in "\r\n\0"):
        raise Refused(f"File descriptor {fd} gave an empty passphrase: give the passphrase on "
                      "its first line.")
    return passphrase


def _error(message: str, stream: TextIO | None = None) -> None:
    (stream or sys.stderr).write(f"tipbox-open: {message}\n")
