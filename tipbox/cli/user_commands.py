"""`tipbox users`: newsroom accounts from the server's command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tipbox.cli.services import cli_actor, open_services, settings_from_env
from tipbox.errors import UsernameTaken

if TYPE_CHECKING:
    from tipbox.accounts import NewCredentials


@click.group()
def users() -> None:
    """Newsroom accounts: add, reset, deactivate, reactivate, list."""


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage other accounts.")
def users_add(name: str, admin: bool) -> None:
    """Create an account and print its credentials.

    The passphrase, TOTP secret, otpauth:// URI and QR code are printed this once only.
    """
    with open_services(settings_from_env()) as services:
        try:
            creds = services.accounts.create(name, cli_actor(), admin=admin)
        except UsernameTaken as exc:
            raise click.ClickException(
                f"{exc} To give {exc.existing} new credentials instead, run "
                f"`tipbox users reset {exc.existing}`.") from None
    role = "admin" if admin else "journalist"
    _show_credentials(creds, f"Account created: {creds.username} ({role}).")


@users.command("reset")
@click.argument("name")
def users_reset(name: str) -> None:
    """New passphrase and TOTP secret for an account.

    Both are replaced; the old passphrase and authenticator stop working at once, and
    any login lock is lifted. The new ones are printed once, as for `add`.
    """
    with open_services(settings_from_env()) as services:
        creds = services.accounts.reset_credentials(name, cli_actor())
    _show_credentials(creds, f"New credentials for {creds.username}; the old passphrase and "
                             "authenticator no longer work, and any login lock is lifted.")


@users.command("deactivate")
@click.argument("name")
def users_deactivate(name: str) -> None:
    """Refuse every login to an account.

    Nothing is deleted; `tipbox users reactivate NAME` undoes it.
    """
    with open_services(settings_from_env()) as services:
        services.accounts.deactivate(name, cli_actor())
    click.echo(f"{name} is deactivated: every login is refused. "
               f"Undo with `tipbox users reactivate {name}`.")


@users.command("reactivate")
@click.argument("name")
def users_reactivate(name: str) -> None:
    """Allow logins again; also lifts a login lock.

    The account keeps its current passphrase and authenticator.
    """
    with open_services(settings_from_env()) as services:
        services.accounts.reactivate(name, cli_actor())
    click.echo(f"{name} can log in again with the same passphrase and authenticator. If "
               f"those are lost, run `tipbox users reset {name}`.")


@users.command("list")
def users_list() -> None:
    """Show every account with its role and status."""
    with open_services(settings_from_env()) as services:
        summaries = services.accounts.list()
    if not summaries:
        click.echo("No accounts yet: create one with `tipbox users add NAME [--admin]`.")
        return
    rows = [("USERNAME", "ROLE", "STATUS", "CREATED")]
    for a in summaries:
        status = "active" if a.is_active else "deactivated"
        if a.locked_until is not None:
            status += f", locked until {a.locked_until:%Y-%m-%d %H:%M} UTC"
        rows.append((a.username, "admin" if a.is_admin else "journalist", status,
                     a.created_on.isoformat()))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        click.echo("  ".join([*padded, row[3]]))


def _show_credentials(creds: NewCredentials, heading: str) -> None:
    handover = (f"Hand these to {creds.username} in person, never by e-mail or chat. They are "
                "shown only this once and cannot be shown again.")
    click.echo("\n".join([
        heading,
        handover,
        "",
        f"  Username:     {creds.username}",
        f"  Passphrase:   {creds.passphrase}",
        f"  TOTP secret:  {creds.totp_secret}",
        f"  otpauth URI:  {creds.otpauth_uri}",
        "",
        "Scan this QR code with the journalist's authenticator app, or type in the TOTP secret:",
    ]))
    click.echo(creds.qr_for_terminal(), nl=False)
    click.echo(f"If they are lost, run `tipbox users reset {creds.username}` for new ones.")
