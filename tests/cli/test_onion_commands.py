"""`tipbox onion` and the onion checks of `tipbox doctor`, against a real tor run offline."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.e2e.server import TIPBOX
from tests.helpers import cli_env
from tests.tor_process import RELOADED, RunningTor, offline_torrc, tor_binary
from tipbox.cli import main
from tipbox.config import Settings


def onion(tor_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["onion", *args], env={"TIPBOX_ONION_DIR": str(tor_dir)})


def write_torrc(tor_dir: Path, client_auth_dir: Path | None = None) -> Path:
    lines = onion(tor_dir, "torrc")
    assert lines.exit_code == 0, lines.output
    torrc = tor_dir / "torrc"
    torrc.write_text(offline_torrc(lines.stdout, tor_dir, client_auth_dir=client_auth_dir))
    return torrc


# What tor warns of in a test run and nowhere else: root in CI, and our info-level log.
EXPECTED_WARNINGS = ("You are running Tor as root", "you're logging more than \"notice\"")


def unexpected_warnings(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "[warn]" in line and not any(known in line for known in EXPECTED_WARNINGS)]


@pytest.fixture
def tor_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tor"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def tor(tor_dir: Path) -> Iterator[RunningTor]:
    """tor running on the torrc of `tipbox onion torrc`, both services created."""
    running = RunningTor(write_torrc(tor_dir), tor_dir)
    try:
        running.wait_for("both hostnames", lambda: all(
            (tor_dir / name / "hostname").exists() for name in ("tipbox", "tipbox-newsroom")))
        running.wait_started()
        yield running
    finally:
        running.stop()


def test_the_torrc_tipbox_writes_is_one_tor_accepts(tor_dir: Path) -> None:
    torrc = write_torrc(tor_dir)
    verified = subprocess.run([tor_binary(), "--verify-config", "-f", str(torrc)],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Configuration was valid" in verified.stdout
    lines = onion(tor_dir, "torrc").stdout
    source, newsroom = lines.split(f"HiddenServiceDir {tor_dir / 'tipbox-newsroom'}\n", 1)
    source = source.split(f"HiddenServiceDir {tor_dir / 'tipbox'}\n", 1)[1]
    assert "HiddenServicePort 80 127.0.0.1:8080\n" in source
    assert "\nHiddenServicePoWDefensesEnabled 1\n" in source
    assert "8081" not in source
    assert "HiddenServicePort 80 127.0.0.1:8081" in newsroom
    assert "PoW" not in newsroom  # client authorization already keeps everyone else out


def test_tor_creates_both_onion_services_from_that_torrc(tor: RunningTor, tor_dir: Path) -> None:
    addresses = set()
    for name in ("tipbox", "tipbox-newsroom"):
        service = tor_dir / name
        assert (service / "hs_ed25519_secret_key").stat().st_mode & 0o077 == 0
        assert (service / "authorized_clients").is_dir()
        hostname = (service / "hostname").read_text().strip()
        assert hostname.endswith(".onion") and len(hostname) == 62
        addresses.add(hostname)
    assert len(addresses) == 2, "the sources and the newsroom must not share an address"
    assert unexpected_warnings(tor.log()) == []


def test_a_journalist_key_is_loaded_by_the_service_and_its_private_line_by_a_client(
        tor: RunningTor, tor_dir: Path) -> None:
    added = onion(tor_dir, "add-journalist", "Ada")
    assert added.exit_code == 0, added.output
    private_line = added.stdout.strip()
    address = (tor_dir / "tipbox-newsroom" / "hostname").read_text().strip()
    assert private_line.startswith(address.removesuffix(".onion") + ":descriptor:x25519:")
    assert "systemctl reload tor" in added.stderr
    auth = tor_dir / "tipbox-newsroom" / "authorized_clients" / "ada.auth"
    assert auth.stat().st_mode & 0o777 == 0o600
    assert auth.read_text().startswith("descriptor:x25519:")

    tor.reload()
    tor.wait_for("loading ada's key", lambda: "Loaded a client authorization key file ada.auth."
                 in tor.log_since_last_reload())
    tor.stop()

    # The printed line, as a tor client holding it in ClientOnionAuthDir reads it.
    clients = tor_dir / "client-keys"
    clients.mkdir(mode=0o700)
    (clients / "ada.auth_private").write_text(private_line + "\n")
    client = RunningTor(write_torrc(tor_dir, client_auth_dir=clients), tor_dir)
    try:
        client.wait_for("loading the private line", lambda: "Loaded a client authorization "
                        "key file ada.auth_private." in client.log())
        assert unexpected_warnings(client.log()) == []
    finally:
        client.stop()


def test_the_printed_private_key_is_the_other_half_of_the_installed_public_key(
        tor: RunningTor, tor_dir: Path) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = onion(tor_dir, "add-journalist", "ada").stdout.strip().rsplit(":", 1)[1]
    public = (tor_dir / "tipbox-newsroom/authorized_clients/ada.auth").read_text().strip()
    assert "=" not in private + public and len(private) == len(public.rsplit(":", 1)[1]) == 52
    key = X25519PrivateKey.from_private_bytes(base64.b32decode(private + "===="))
    derived = base64.b32encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    assert public == "descriptor:x25519:" + derived.decode().rstrip("=")


def test_revoke_removes_the_client_and_tor_stops_loading_it(
        tor: RunningTor, tor_dir: Path) -> None:
    for name in ("ada", "bob"):
        assert onion(tor_dir, "add-journalist", name).exit_code == 0
    assert onion(tor_dir, "list").stdout.split() == ["ada", "bob"]

    revoked = onion(tor_dir, "revoke", "ada")
    assert revoked.exit_code == 0, revoked.output
    assert "systemctl reload tor" in revoked.stdout
    assert onion(tor_dir, "list").stdout.split() == ["bob"]
    # Two reloads: the second begins only once tor has finished the first.
    tor.reload()
    tor.reload()
    first = tor.log().split(RELOADED)[-2]
    assert "Loaded a client authorization key file bob.auth." in first
    assert "ada.auth" not in first

    again = onion(tor_dir, "revoke", "ada")
    assert again.exit_code == 1 and "No client key named ada" in again.output
    assert "tipbox onion list" in again.output


def test_a_second_key_under_the_same_name_is_refused(tor: RunningTor, tor_dir: Path) -> None:
    assert onion(tor_dir, "add-journalist", "ada").exit_code == 0
    before = (tor_dir / "tipbox-newsroom/authorized_clients/ada.auth").read_text()
    twice = onion(tor_dir, "add-journalist", "ada")
    assert twice.exit_code == 1
    assert "ada already has a client key" in twice.output and "revoke ada" in twice.output
    assert (tor_dir / "tipbox-newsroom/authorized_clients/ada.auth").read_text() == before


def test_a_journalist_cannot_be_added_before_tor_made_the_service(tor_dir: Path) -> None:
    early = onion(tor_dir, "add-journalist", "ada")
    assert early.exit_code == 1
    assert "tor has not created this onion service" in early.output
    assert "restart tor" in early.output
    assert not list(tor_dir.rglob("*.auth"))


def test_a_newsroom_port_on_the_sources_onion_service_is_refused(tor_dir: Path) -> None:
    same = onion(tor_dir, "torrc", "--newsroom-port", "8080")
    assert same.exit_code == 1 and same.stdout == ""
    assert "would put the newsroom interface on the sources' onion service" in same.output

    torrc = tor_dir / "torrc"
    torrc.write_text(onion(tor_dir, "torrc").stdout.replace(
        "HiddenServicePort 80 127.0.0.1:8080\n",
        "HiddenServicePort 80 127.0.0.1:8080\nHiddenServicePort 8081 127.0.0.1:8081\n", 1))
    checked = onion(tor_dir, "check-torrc", str(torrc))
    assert checked.exit_code == 1
    assert "leads port 8081 to 127.0.0.1:8081, the newsroom interface" in checked.output
    assert "Remove that HiddenServicePort line" in checked.output


def test_check_torrc_follows_includes_and_accepts_what_tipbox_wrote(tor_dir: Path) -> None:
    included = tor_dir / "torrc.d"
    included.mkdir()
    assert onion(tor_dir, "torrc", "--out", str(included / "tipbox.conf")).exit_code == 0
    main_torrc = tor_dir / "torrc"
    main_torrc.write_text(f"SocksPort 0\n%include {included}\n")
    checked = onion(tor_dir, "check-torrc", str(main_torrc))
    assert checked.exit_code == 0, checked.output
    assert "both onion services are set up" in checked.output


def doctor(settings: Settings, tor_dir: Path) -> Result:
    return CliRunner().invoke(main, ["doctor"], env=cli_env(
        settings, TIPBOX_ONION_DIR=str(tor_dir), TIPBOX_TOR_PID_FILE=str(tor_dir / "tor.pid"),
        TIPBOX_TORRC=str(tor_dir / "torrc")))


def test_doctor_reports_tor_the_hostnames_and_the_authorized_clients(
        settings: Settings, tor: RunningTor, tor_dir: Path) -> None:
    tor.wait_for("its pid file", (tor_dir / "tor.pid").exists)
    no_client = doctor(settings, tor_dir)
    assert no_client.exit_code == 1
    assert f"tor runs (process {tor.process.pid})" in no_client.output
    for name in ("tipbox", "tipbox-newsroom"):
        assert (tor_dir / name / "hostname").read_text().strip() in no_client.output
    assert "PROBLEM: The newsroom's onion service has no authorized client" in no_client.output
    assert "tipbox onion add-journalist NAME" in no_client.output

    onion(tor_dir, "add-journalist", "ada")
    healthy = doctor(settings, tor_dir)
    assert healthy.exit_code == 0, healthy.output
    assert "1 client key(s) for the newsroom's onion service: ada" in healthy.output
    assert "All checks passed." in healthy.output

    tor.stop()
    stopped = doctor(settings, tor_dir)
    assert stopped.exit_code == 1
    assert "PROBLEM: tor is not running" in stopped.output
    assert "sudo systemctl start tor" in stopped.output


def test_doctor_reports_a_missing_onion_service_and_a_bad_torrc(
        settings: Settings, tor_dir: Path) -> None:
    (tor_dir / "torrc").write_text("HiddenServiceDir /elsewhere\nHiddenServicePort 80 8081\n")
    report = doctor(settings, tor_dir)
    assert report.exit_code == 1
    assert "PROBLEM: tor is not running" in report.output
    assert f"The sources' onion service has no address. {tor_dir / 'tipbox' / 'hostname'} " \
           "does not exist" in report.output
    assert "No onion service for the sources" in report.output


def test_doctor_skips_tor_where_no_onion_service_is_configured(settings: Settings) -> None:
    report = CliRunner().invoke(main, ["doctor"], env=cli_env(settings))
    assert report.exit_code == 0, report.output
    assert "Onion services: not checked (TIPBOX_ONION_DIR is not set)." in report.output


def test_doctor_accepts_interfaces_on_other_ports_and_still_refuses_the_newsroom_on_the_sources(
        settings: Settings, tor_dir: Path) -> None:
    moved = onion(tor_dir, "torrc", "--source-port", "9080", "--newsroom-port", "9081").stdout
    (tor_dir / "torrc").write_text(moved)
    # tor is not running here; the torrc itself draws no complaint.
    assert f"{tor_dir / 'torrc'}:" not in doctor(settings, tor_dir).output

    (tor_dir / "torrc").write_text(moved.replace("HiddenServicePort 80 127.0.0.1:9080",
                                                 "HiddenServicePort 80 127.0.0.1:9081"))
    report = doctor(settings, tor_dir)
    assert report.exit_code == 1
    assert "leads port 80 to 127.0.0.1:9081, the newsroom interface" in report.output


def test_torrc_out_into_a_missing_folder_says_what_to_do(tor_dir: Path) -> None:
    written = onion(tor_dir, "torrc", "--out", str(tor_dir / "torrc.d" / "tipbox.conf"))
    assert written.exit_code == 1
    assert "create its folder first" in written.output and "Traceback" not in written.output


def as_nobody(tor_dir: Path, *groups: int) -> subprocess.CompletedProcess[str]:
    """`tipbox onion list` as an unprivileged user, with ``groups`` only, as the units run
    `tipbox doctor` (user tipbox, tor's group)."""
    who = ["--reuid=65534", "--regid=65534",
           f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"]
    return subprocess.run(["setpriv", *who, "--", TIPBOX, "onion", "list"],
                          env={**os.environ, "TIPBOX_ONION_DIR": str(tor_dir)},
                          capture_output=True, text=True, timeout=60, check=False)


def test_tors_group_may_see_hostnames_and_client_names_but_not_the_secret_keys() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run tor as one user and tipbox as another")
    with tempfile.TemporaryDirectory(prefix="tipbox-tor-") as folder:
        tor_dir = Path(folder)  # under /tmp, which anyone may enter, as /var/lib is
        running = RunningTor(write_torrc(tor_dir), tor_dir)
        try:
            running.wait_for("both hostnames", lambda: all(
                (tor_dir / n / "hostname").exists() for n in ("tipbox", "tipbox-newsroom")))
            assert onion(tor_dir, "add-journalist", "ada").exit_code == 0
            tor_group = tor_dir.stat().st_gid
            with_group = as_nobody(tor_dir, tor_group)
            assert with_group.returncode == 0, with_group.stderr
            assert with_group.stdout.split() == ["ada"]
            assert (tor_dir / "tipbox" / "hostname").stat().st_mode & 0o040
            for name in ("tipbox", "tipbox-newsroom"):
                secret = tor_dir / name / "hs_ed25519_secret_key"
                assert secret.stat().st_mode & 0o077 == 0, "tor's group must not read it"
            assert (tor_dir / "tipbox-newsroom/authorized_clients/ada.auth").stat().st_mode \
                & 0o077 == 0

            without = as_nobody(tor_dir)
            assert without.returncode == 1
            assert "run this command as root" in without.stderr
        finally:
            running.stop()
