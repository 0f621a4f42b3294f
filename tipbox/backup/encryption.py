"""gpg as a filter for backups: a tar stream in, an OpenPGP message out, and back.

The passphrase reaches gpg through a pipe of its own (``--passphrase-fd``): never its
command line (``/proc/*/cmdline`` is world-readable), never its environment, never a
file. Each run uses a throwaway GnuPG home, so no key, cache or trust setting of the
admin's leaks in, and its gpg-agent is stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tipbox.errors import BackupError

# A backup carries the instance secrets: a guessed passphrase opens every codename's hash
# salt. Twelve characters is a floor, not advice; the admin guide asks for a diceware phrase.
MIN_PASSPHRASE_CHARS = 12

# Ciphertext does not compress: gpg's default zlib pass would only cost time. The S2K is
# made as slow as OpenPGP's iterated-and-salted count allows, since the file may travel.
_ENCRYPT_OPTIONS = ["--compress-algo", "none", "--cipher-algo", "AES256",
                    "--s2k-mode", "3", "--s2k-digest-algo", "SHA512",
                    "--s2k-count", "65011712"]
_COMMON = ["--batch", "--no-tty", "--no-symkey-cache", "--status-fd", "2"]
_PIPE_BYTES = 1024 * 1024
# gpg's stderr is kept to report a failure; its last lines say why, so no more is needed.
_STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class Encryption:
    """How a backup is encrypted: to a passphrase, or to the public key in a file."""

    passphrase: bytes | None = field(default=None, repr=False)
    recipient_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.passphrase is None) == (self.recipient_file is None):
            raise BackupError("Give either a passphrase or a recipient key file, not both.")
        if self.passphrase is not None:
            check_passphrase(self.passphrase)
        if self.recipient_file is not None and not self.recipient_file.is_file():
            raise BackupError(f"{self.recipient_file} is not a file. Give the public key "
                              "(an .asc file) of the key the backup is for.")


def check_passphrase(passphrase: bytes) -> None:
    if b"\n" in passphrase or b"\r" in passphrase or b"\0" in passphrase:
        raise BackupError("The passphrase must be one line. Type it again without line "
                          "breaks.")
    if len(passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE_CHARS:
        raise BackupError(f"The passphrase is shorter than {MIN_PASSPHRASE_CHARS} "
                          "characters. A backup holds the instance secrets: choose a longer "
                          "one (six or more random words).")


@dataclass
class GpgRun:
    """A running gpg: write to ``stdin`` (encrypting) or read ``stdout`` (decrypting),
    then :meth:`finish`."""

    process: subprocess.Popen[bytes]
    _stderr: bytearray = field(default_factory=bytearray)
    _reader: threading.Thread | None = None

    @property
    def stdin(self) -> IO[bytes]:
        return _pipe(self.process.stdin)

    @property
    def stdout(self) -> IO[bytes]:
        return _pipe(self.process.stdout)

    def start_reading_stderr(self) -> None:
        stderr = _pipe(self.process.stderr)

        def drain() -> None:
            for line in stderr:
                self._stderr += line
                del self._stderr[:-_STDERR_KEEP]

        self._reader = threading.Thread(target=drain, name="gpg-stderr", daemon=True)
        self._reader.start()

    def finish(self) -> tuple[int, str]:
        """Wait for gpg; its exit status and what it said (status lines included)."""
        returncode = self.process.wait()
        if self._reader is not None:
            self._reader.join()
        return returncode, self._stderr.decode("utf-8", "replace")


def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
    if pipe is None:
        raise RuntimeError("gpg was started without this pipe")
    return pipe


@contextmanager
def encrypting(encryption: Encryption, output: IO[bytes], gpg_binary: str) -> Iterator[GpgRun]:
    """gpg encrypting its stdin into ``output``. The caller writes, closes stdin, and
    calls ``finish()``; a gpg still running when the block ends is killed."""
    if encryption.recipient_file is not None:
        # --recipient-file: the key is used from the file, never imported into a keyring.
        how = ["--trust-model", "always", "--recipient-file", str(encryption.recipient_file),
               "--encrypt"]
        with _gpg(how + _ENCRYPT_OPTIONS[:4], None, gpg_binary, stdin=subprocess.PIPE,
                  stdout=output) as run:
            yield run
    else:
        with _gpg(["--symmetric", *_ENCRYPT_OPTIONS], encryption.passphrase, gpg_binary,
                  stdin=subprocess.PIPE, stdout=output) as run:
            yield run


@contextmanager
def decrypting(source: Path, passphrase: bytes | None, gnupghome: Path | None,
               gpg_binary: str) -> Iterator[GpgRun]:
    """gpg decrypting ``source`` to its stdout. With ``gnupghome`` (a backup made for a
    key), that home's secret key is used; otherwise a throwaway home and ``passphrase``."""
    with _gpg(["--decrypt", str(source)], passphrase, gpg_binary, stdin=subprocess.DEVNULL,
              stdout=subprocess.PIPE, home=gnupghome) as run:
        yield run


def integrity_verified(returncode: int, status: str) -> bool:
    """Whether gpg decrypted the whole message and checked its integrity protection: MDC
    (SEIPD v1) or an AEAD tag. gpg only knows this at the very end."""
    lines = status.splitlines()
    if returncode != 0 or "[GNUPG:] DECRYPTION_OKAY" not in lines \
            or "[GNUPG:] DECRYPTION_FAILED" in lines:
        return False
    for line in lines:
        fields = line.split()
        if fields[:2] == ["[GNUPG:]", "DECRYPTION_INFO"] and len(fields) >= 4:
            mdc_method = fields[2]
            aead_algo = fields[4] if len(fields) > 4 else "0"
            return mdc_method == "2" or aead_algo != "0"
    return "[GNUPG:] GOODMDC" in lines


def wrong_passphrase(status: str) -> bool:
    return "BAD_PASSPHRASE" in status or "Bad session key" in status


def no_secret_key(status: str) -> bool:
    return "[GNUPG:] NO_SECKEY" in status


@contextmanager
def _gpg(args: list[str], passphrase: bytes | None, gpg_binary: str, *,
         stdin: int | IO[bytes], stdout: int | IO[bytes],
         home: Path | None = None) -> Iterator[GpgRun]:
    with _home(home) as homedir:
        pass_fds: tuple[int, ...] = ()
        command = [gpg_binary, "--homedir", str(homedir), *_COMMON]
        read_end = -1
        if passphrase is not None:
            read_end, write_end = os.pipe()
            # A passphrase is far smaller than a pipe's buffer: this write cannot block.
            os.write(write_end, passphrase + b"\n")
            os.close(write_end)
            pass_fds = (read_end,)
            # loopback: gpg takes the passphrase from the pipe instead of asking the agent's
            # pinentry. Without one (a backup's own secret key), the agent may ask for the
            # key's passphrase as it always does.
            command += ["--pinentry-mode", "loopback", "--passphrase-fd", str(read_end)]
        try:
            process = subprocess.Popen(
                [*command, *args], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                pass_fds=pass_fds)
        except OSError as exc:
            raise BackupError(f"Could not run {gpg_binary!r} ({type(exc).__name__}). Install "
                              "GnuPG (Debian: apt-get install gnupg) or set "
                              "TIPBOX_GPG_BINARY.") from None
        finally:
            if read_end >= 0:
                os.close(read_end)
        run = GpgRun(process)
        _widen(process.stdin)
        _widen(process.stdout)
        run.start_reading_stderr()
        try:
            yield run
        finally:
            if process.poll() is None:
                process.kill()
            run.finish()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()


def _widen(pipe: IO[bytes] | None) -> None:
    """A 1 MiB pipe instead of 64 KiB: gpg and tipbox wake each other 16 times less often
    (bench/backup.py). Best effort: an unprivileged process may be capped lower."""
    if pipe is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


@contextmanager
def _home(given: Path | None) -> Iterator[Path]:
    if given is not None:
        yield given
        return
    # Under the system's temporary folder: an agent's socket path must stay short. The
    # home holds no key and no plaintext, only gpg's empty keybox and random seed.
    with tempfile.TemporaryDirectory(prefix="tipbox-gpg-") as made:
        home = Path(made)
        try:
            yield home
        finally:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           capture_output=True, check=False)
