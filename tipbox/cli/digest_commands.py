"""`tipbox digest`: the daily e-mail telling journalists how many sources wrote."""

from __future__ import annotations

import sys

import click

from tipbox.cli.services import open_services, settings_from_env


@click.command()
@click.option("--counts/--no-counts", default=None,
              help="Print how many sources wrote (default: only on a terminal).")
def digest(counts: bool | None) -> None:
    """E-mail the journalists how many sources wrote since the last digest (whole UTC days
    through yesterday; no names, no contents, no times). Run it daily from a timer."""
    from tipbox.digest import send_digest

    settings = settings_from_env()
    with open_services(settings) as services:
        sent = send_digest(settings, services.sessions)
    if sent is None:
        click.echo("The digest for the days through yesterday was already sent; nothing to "
                   "do.")
        return
    recipients = sent.plain + sent.encrypted
    # From a timer, no count: a daily count with its date in the system log would keep
    # the history of the sources' activity that the digest itself avoids.
    if counts if counts is not None else sys.stdout.isatty():
        click.echo(f"{sent.count} source(s) wrote through {sent.last_day.isoformat()}.")
    click.echo(f"Digest sent to {recipients} recipient(s), {sent.encrypted} of them "
               "encrypted.")
