"""The ``tipbox`` command: init, serve, demo, users, keys, onion, prune, doctor.

A thin shell: each command group is a module of its own, each command calls domain
functions and prints what they return. They reach the instance through
:func:`tipbox.cli.services.open_services`.
"""

from __future__ import annotations

import logging

import click

from tipbox.cli.key_commands import keys
from tipbox.cli.maintenance_commands import doctor, prune
from tipbox.cli.onion_commands import onion
from tipbox.cli.services import cli_actor
from tipbox.cli.setup_commands import demo, init, serve
from tipbox.cli.user_commands import users

__all__ = ["cli_actor", "main"]


@click.group()
def main() -> None:
    """tipbox: anonymous, encrypted tip submission for newsrooms."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%Y-%m-%d %H:%M")
    # Alembic narrates its plug-ins and contexts at INFO on every start; that chatter
    # would bury what an admin needs to read (and fill cron mail).
    logging.getLogger("alembic").setLevel(logging.WARNING)


for command in (init, serve, demo, users, keys, onion, prune, doctor):
    main.add_command(command)
