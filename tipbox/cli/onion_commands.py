"""`tipbox onion`: the torrc lines for the two onion services and the newsroom service's
client keys. Run as root: tor's folders are closed to every other user."""

from __future__ import annotations

from pathlib import Path

import click

from tipbox.cli.services import errors_as_next_steps, settings_from_env
from tipbox.cli.setup_commands import DEFAULT_PORTS
from tipbox.onion import OnionLayout


def _layout(source_port: int = DEFAULT_PORTS["source"],
            newsroom_port: int = DEFAULT_PORTS["newsroom"]) -> OnionLayout:
    from tipbox.config import TorSettings

    tor = settings_from_env().tor or TorSettings()
    with errors_as_next_steps():
        return OnionLayout(tor.tor_dir, source_port, newsroom_port)


@click.group()
def onion() -> None:
    """The sources' onion service and the newsroom's, with client authorization."""


@onion.command()
@click.option("--source-port", type=int, default=DEFAULT_PORTS["source"], show_default=True,
              help="Where `tipbox serve source` listens.")
@click.option("--newsroom-port", type=int, default=DEFAULT_PORTS["newsroom"],
              show_default=True, help="Where `tipbox serve newsroom` listens.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the lines to this file (for example /etc/tor/torrc.d/tipbox.conf) "
                   "instead of printing them.")
def torrc(source_port: int, newsroom_port: int, out: Path | None) -> None:
    """Print (or write) the torrc lines for both onion services."""
    from tipbox.onion import torrc_lines

    with errors_as_next_steps():
        text = torrc_lines(_layout(source_port, newsroom_port))
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {out} ({exc.strerror}): create its folder "
                                   "first, and run as root to write into /etc/tor.") from None
    click.echo(f"Wrote {out}. Check it with `tor --verify-config`, then `sudo systemctl "
               "restart tor`.", err=True)


@onion.command("check-torrc")
@click.argument("torrc_file", metavar="TORRC", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source-port", type=int, default=DEFAULT_PORTS["source"], show_default=True)
@click.option("--newsroom-port", type=int, default=DEFAULT_PORTS["newsroom"],
              show_default=True)
def check_torrc(torrc_file: Path | None, source_port: int, newsroom_port: int) -> None:
    """Check a torrc (default: TIPBOX_TORRC, else /etc/tor/torrc) for tipbox's two onion
    services; exit status 1 with what to fix."""
    from tipbox.config import TorSettings
    from tipbox.onion import parse_torrc, read_torrc, torrc_problems

    path = torrc_file or (settings_from_env().tor or TorSettings()).torrc
    layout = _layout(source_port, newsroom_port)
    with errors_as_next_steps():
        problems = torrc_problems(parse_torrc(read_torrc(path)), layout)
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{path}: both onion services are set up as tipbox needs them.")


@onion.command("add-journalist")
@click.argument("name")
def add_journalist(name: str) -> None:
    """Make a client key for NAME to reach the newsroom's onion service; prints its
    private half once."""
    from tipbox.onion import add_client

    with errors_as_next_steps():
        made = add_client(_layout(), name)
    click.echo(f"Added {made.auth_file}. Now `sudo systemctl reload tor`.", err=True)
    click.echo("Give this line to the journalist, by hand or over an encrypted channel, and "
               "keep no copy. Tor Browser asks for the part after 'x25519:' when they first "
               "open the address; a tor with ClientOnionAuthDir takes the whole line as a "
               f"file named {made.name}.auth_private. It is shown only now:", err=True)
    click.echo(made.private_line)


@onion.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Remove NAME's client key; their Tor Browser can no longer reach the newsroom."""
    from tipbox.onion import revoke_client

    with errors_as_next_steps():
        removed = revoke_client(_layout(), name)
    click.echo(f"Removed {removed}. Now `sudo systemctl reload tor`: until then tor still "
               "lets that key in.")


@onion.command("list")
def list_() -> None:
    """List the client keys of the newsroom's onion service."""
    from tipbox.onion import list_clients

    with errors_as_next_steps():
        names = list_clients(_layout())
    for name in names:
        click.echo(name)
    if not names:
        click.echo("No client keys: nobody can be let into the newsroom's onion service yet. "
                   "`tipbox onion add-journalist NAME` makes one.", err=True)
