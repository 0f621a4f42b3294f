"""tipbox.onion without tor: the torrc rules, client names, and the files it writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tipbox.onion import (
    OnionError,
    OnionLayout,
    add_client,
    check_client_name,
    list_clients,
    parse_torrc,
    torrc_lines,
    torrc_problems,
)

LAYOUT = OnionLayout(Path("/var/lib/tor"))


def problems(text: str) -> list[str]:
    return torrc_problems(parse_torrc(text), LAYOUT)


def test_the_generated_torrc_passes_its_own_rules() -> None:
    assert problems(torrc_lines(LAYOUT)) == []


def test_a_torrc_that_publishes_the_newsroom_port_on_the_sources_address_is_refused() -> None:
    # The mistake issue 12 names: one more HiddenServicePort line in the wrong block.
    text = torrc_lines(LAYOUT).replace("HiddenServicePort 80 127.0.0.1:8080",
                                       "HiddenServicePort 80 127.0.0.1:8080\n"
                                       "HiddenServicePort 81 localhost:8081")
    found = problems(text)
    assert len(found) == 1
    assert "leads port 81 to localhost:8081, the newsroom interface" in found[0]


def test_a_newsroom_target_written_as_a_bare_port_is_recognised() -> None:
    text = ("HiddenServiceDir /var/lib/tor/tipbox\nHiddenServicePort 80 8081\n"
            "HiddenServicePoWDefensesEnabled 1\n"
            "HiddenServiceDir /var/lib/tor/tipbox-newsroom/\nHiddenServicePort 80 8081\n")
    found = problems(text)
    assert any("leads port 80 to 127.0.0.1:8081, the newsroom interface" in p for p in found)
    assert any("does not lead port 80 to the source interface" in p for p in found)


def test_a_port_twice_a_service_twice_and_a_missing_defence_are_each_named() -> None:
    text = ("HiddenServiceDir /var/lib/tor/tipbox\nHiddenServicePort 80 127.0.0.1:8080\n"
            "HiddenServicePort 80 127.0.0.1:8080\n"
            "HiddenServiceDir /var/lib/tor/tipbox\nHiddenServicePort 80 127.0.0.1:8080\n")
    found = problems(text)
    assert "Port 80 appears twice in the onion service /var/lib/tor/tipbox: keep one " \
           "HiddenServicePort line for it." in found
    assert "HiddenServiceDir /var/lib/tor/tipbox appears twice: keep one." in found
    assert any("lacks `HiddenServicePoWDefensesEnabled 1`" in p for p in found)
    assert any("No onion service for the newsroom" in p for p in found)


def test_an_unreadable_port_line_says_which_line() -> None:
    with pytest.raises(OnionError, match="HiddenServicePort http"):
        parse_torrc("HiddenServiceDir /x\nHiddenServicePort http 8080\n")


def test_ports_out_of_range_are_refused() -> None:
    with pytest.raises(OnionError, match="between 1 and 65535, got 70000"):
        OnionLayout(source_port=70000)


@pytest.mark.parametrize("name", ["", "../etc", "ada.auth", "-ada", "a b", "x" * 64])
def test_a_client_name_that_is_not_a_plain_word_is_refused(name: str) -> None:
    with pytest.raises(OnionError, match="cannot name a client key"):
        check_client_name(name)


def test_client_names_are_kept_in_lower_case() -> None:
    assert check_client_name("Ada_Lovelace-2") == "ada_lovelace-2"


def fake_service(tor_dir: Path) -> OnionLayout:
    """The folder tor would have made: a hostname and an empty authorized_clients/."""
    layout = OnionLayout(tor_dir)
    layout.clients_dir.mkdir(parents=True, mode=0o700)
    (layout.newsroom_dir / "hostname").write_text("a" * 56 + ".onion\n")
    return layout


def test_a_client_key_file_is_private_and_owned_by_tor_when_root_writes_it(
        tmp_path: Path) -> None:
    layout = fake_service(tmp_path)
    if os.geteuid() == 0:  # as tor's own folder is: another user's (nobody stands for tor)
        os.chown(layout.clients_dir, 65534, 65534)
    made = add_client(layout, "ada")
    stat = made.auth_file.stat()
    assert stat.st_mode & 0o777 == 0o600
    assert (stat.st_uid, stat.st_gid) == (layout.clients_dir.stat().st_uid,
                                          layout.clients_dir.stat().st_gid)
    assert list_clients(layout) == ["ada"]
    assert made.private_line not in repr(made)  # never into a log by accident


def test_a_hostname_that_is_not_an_onion_address_is_refused(tmp_path: Path) -> None:
    layout = fake_service(tmp_path)
    (layout.newsroom_dir / "hostname").write_text("example.com\n")
    with pytest.raises(OnionError, match="does not hold an onion address"):
        add_client(layout, "ada")
    assert list_clients(layout) == []
