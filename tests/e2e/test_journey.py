"""The whole journey on real servers: a source submits, a journalist made with the CLI logs
in with a TOTP code, downloads a bundle over HTTP, and tipbox-open decrypts it in a
separate GnuPG home; then a reply, and a key rotation with items under old and new keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pyotp
import pytest

from tests.e2e.server import TIPBOX, HttpSource, RunningServer, tipbox_server
from tests.helpers import Newsroom, csrf_from, make_newsroom

pytestmark = pytest.mark.e2e
TIPBOX_OPEN = str(Path(sys.executable).with_name("tipbox-open"))


class HttpJournalist(HttpSource):
    """A journalist's browser on the newsroom interface."""

    def log_in(self, username: str, passphrase: str, totp_secret: str) -> int:
        _, page, _ = self.request("/login")
        status, _, _ = self.post_form("/login", {
            "csrf_token": csrf_from(page), "username": username, "passphrase": passphrase,
            "code": pyotp.TOTP(totp_secret).now()})
        return status

    def source_ids(self) -> list[int]:
        _, page, _ = self.request("/")
        return [int(x) for x in re.findall(r'name="source" value="(\d+)"', page)]

    def download_unread(self, source_ids: list[int]) -> bytes:
        _, page, _ = self.request("/")
        body = urllib.parse.urlencode([("csrf_token", csrf_from(page)),
                                       ("action", "download_unread"),
                                       *[("source", str(i)) for i in source_ids]]).encode()
        req = urllib.request.Request(  # noqa: S310 - our own loopback URL
            self.base + "/bulk", data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        with self.opener.open(req, timeout=120) as resp:
            assert resp.headers["Content-Type"] == "application/x-tar"
            return bytes(resp.read())


@pytest.fixture
def env(tmp_path: Path, newsroom: Newsroom) -> dict[str, str]:
    return {"TIPBOX_DATA_DIR": str(tmp_path / "data"),
            "TIPBOX_KEYS_DIR": str(newsroom.keys_dir), "TIPBOX_SCRYPT_N": "16"}


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    with ExitStack() as stack:
        source = stack.enter_context(tipbox_server("source", env, tmp_path / "source.log"))
        newsroom = stack.enter_context(tipbox_server("newsroom", env, tmp_path / "nr.log"))
        yield source, newsroom


def add_journalist(env: dict[str, str], name: str) -> tuple[str, str]:
    out = subprocess.run([TIPBOX, "users", "add", name], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    passphrase = re.search(r"Passphrase:\s+(.+)", out)
    secret = re.search(r"TOTP secret:\s+([A-Z2-7]+)", out)
    assert passphrase and secret, out
    return passphrase.group(1).strip(), secret.group(1)


def tipbox_open(bundle: Path, out: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIPBOX_OPEN, str(bundle), "--out", str(out), "--gnupghome",
                           str(home), "--quiet"], capture_output=True, text=True, check=False)


def _decrypted(out: Path) -> list[Path]:
    return [p for p in out.rglob("*")
            if p.is_file() and p.name != "index.txt" and not p.name.startswith(".")]


def opened_files(out: Path) -> dict[str, bytes]:
    """One source's decrypted files by name, without the NN- order prefix."""
    return {re.sub(r"^\d+-", "", p.name): p.read_bytes() for p in _decrypted(out)}


def opened_texts(out: Path) -> list[str]:
    """Every decrypted file's text, across all sources, sorted."""
    return sorted(p.read_text() for p in _decrypted(out))


def test_submit_download_and_open_offline_with_the_exact_bytes_and_names(
        servers: tuple[RunningServer, RunningServer], env: dict[str, str],
        newsroom: Newsroom, tmp_path: Path) -> None:
    source_server, newsroom_server = servers
    source = HttpSource(source_server.url)
    codename = source.new_codename()
    files = [(os.urandom(2 * 1024 * 1024), "leaked memo.pdf"),
             ("données,montant\n".encode() * 1000, "budget-2026.csv")]
    assert source.submit("Page 4 has the numbers.", files)[0] == 303

    passphrase, secret = add_journalist(env, "ada")
    journalist = HttpJournalist(newsroom_server.url)
    assert journalist.log_in("ada", passphrase, secret) == 302
    ids = journalist.source_ids()
    assert len(ids) == 1
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(journalist.download_unread(ids))

    # A separate GnuPG home, as on the air-gapped machine: only the secret key is there.
    result = tipbox_open(bundle, tmp_path / "opened", newsroom.secret_home)
    assert result.returncode == 0, result.stderr
    got = opened_files(tmp_path / "opened")
    assert got == {"message.txt": b"Page 4 has the numbers.",
                   "leaked memo.pdf": files[0][0], "budget-2026.csv": files[1][0]}

    # The journalist replies; the source reads it after logging in again, then deletes it.
    _, page, _ = journalist.request(f"/sources/{ids[0]}")
    status, _, _ = journalist.post_form(f"/sources/{ids[0]}/reply", {
        "csrf_token": csrf_from(page), "text": "Thank you. Who else has seen page 4?"})
    assert status == 302
    returning = HttpSource(source_server.url)
    assert returning.login(codename) == 302
    _, page, _ = returning.request("/submit")
    assert "Who else has seen page 4?" in page
    # Deleting asks first, on a page of its own.
    reply_id = re.search(r'href="/replies/([a-z2-7]+)/delete"', page)
    assert reply_id
    _, confirm, _ = returning.request(f"/replies/{reply_id.group(1)}/delete")
    returning.post_form(f"/replies/{reply_id.group(1)}/delete",
                        {"csrf_token": csrf_from(confirm)})
    _, page, _ = journalist.request(f"/sources/{ids[0]}")
    assert "deleted by source" in page


def test_rotation_old_and_new_items_open_with_the_right_keys(
        servers: tuple[RunningServer, RunningServer], env: dict[str, str],
        newsroom: Newsroom, tmp_path: Path) -> None:
    source_server, newsroom_server = servers
    run_env = {**os.environ, **env}

    def tipbox(*args: str) -> str:
        return subprocess.run([TIPBOX, *args], env=run_env, capture_output=True, text=True,
                              check=True).stdout

    def submit(text: str) -> None:
        source = HttpSource(source_server.url)
        source.new_codename()
        assert source.submit(text, [])[0] == 303

    submit("under A")                                   # key A only
    key_b = make_newsroom(tmp_path / "b", "Station B")
    tipbox("keys", "add", str(key_b.public_key_file))
    challenge = tmp_path / "challenge.gpg"
    tipbox("keys", "challenge", key_b.fingerprint, "--out", str(challenge))
    proof = subprocess.run([TIPBOX_OPEN, "keys", "prove", str(challenge), "--gnupghome",
                            str(key_b.secret_home)], capture_output=True, text=True, check=True)
    code = re.search(r"[A-Z2-7]{4}(?:-[A-Z2-7]{4}){3}", proof.stdout)
    assert code, proof.stdout
    tipbox("keys", "activate", key_b.fingerprint, "--proof", code.group(0))
    submit("under A and B")                             # overlap window
    tipbox("keys", "retire", newsroom.fingerprint)
    submit("under B")                                   # key B only

    passphrase, secret = add_journalist(env, "rota")
    journalist = HttpJournalist(newsroom_server.url)
    assert journalist.log_in("rota", passphrase, secret) == 302
    bundle = tmp_path / "all.tar"
    bundle.write_bytes(journalist.download_unread(journalist.source_ids()))

    both = tmp_path / "both-keys"
    subprocess.run(["gpg", "--homedir", str(key_b.secret_home), "--batch", "--export-secret-keys",
                    "--output", str(tmp_path / "b.sec"), key_b.fingerprint], check=True)
    subprocess.run(["cp", "-a", str(newsroom.secret_home), str(both)], check=True)
    subprocess.run(["gpg", "--homedir", str(both), "--batch", "--import", str(tmp_path / "b.sec")],
                   check=True, capture_output=True)
    everything = tipbox_open(bundle, tmp_path / "out-both", both)
    assert everything.returncode == 0, everything.stderr
    assert opened_texts(tmp_path / "out-both") == ["under A", "under A and B", "under B"]

    only_b = tipbox_open(bundle, tmp_path / "out-b", key_b.secret_home)
    assert only_b.returncode == 1
    assert opened_texts(tmp_path / "out-b") == ["under A and B", "under B"]
    index = (tmp_path / "out-b" / "index.txt").read_text()
    assert newsroom.fingerprint in index  # the key still needed for "under A"
    subprocess.run(["gpgconf", "--homedir", str(both), "--kill", "gpg-agent"], check=False)
    subprocess.run(["gpgconf", "--homedir", str(key_b.secret_home), "--kill", "gpg-agent"],
                   check=False)
