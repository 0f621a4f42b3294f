"""`tipbox keys`: the newsroom key ceremony from the server's command line (see
docs/admin-guide.md): add a public key, challenge it, activate it with the proof, retire
it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from tipbox.cli.services import cli_actor, open_services, settings_from_env


@click.group()
def keys() -> None:
    """Newsroom keys: list, add, challenge, activate, retire (see docs/admin-guide.md)."""


@keys.command("list")
def keys_list() -> None:
    """Every key with its state, algorithm, dates and how many items are encrypted to it."""
    with open_services(settings_from_env()) as services:
        records = services.keys.records()
        warnings = services.keys.expiry_warnings()
    if not records:
        click.echo("No keys yet. Add the newsroom's public key: tipbox keys add FILE")
    for rec in records:
        click.echo(f"{rec.fingerprint}  {rec.state.value.upper():8}  {rec.algorithm}")
        click.echo(f"    {'; '.join(rec.uids)}")
        click.echo(f"    created {rec.created_on}, expires "
                   f"{rec.expires_on or 'never'}, added {rec.added_on}"
                   + (f", activated {rec.activated_on}" if rec.activated_on else "")
                   + (f", retired {rec.retired_on}" if rec.retired_on else "")
                   + f"; {rec.items} item(s) encrypted to it"
                   + ("; challenge issued" if rec.pending_challenge else ""))
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)


@keys.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def keys_add(file: Path) -> None:
    """Import a public key (armored or binary) as PENDING."""
    with open_services(settings_from_env()) as services:
        found = services.keys.add(file.read_bytes(), cli_actor())
    info = found.info
    click.echo(f"Added {info.fingerprint} ({found.algorithm}) as PENDING.")
    for uid in info.uids:
        click.echo(f"  user id: {uid}")
    click.echo(f"  expires: {_day(info.expires)}")
    click.echo(f"Next: tipbox keys challenge {info.fingerprint} --out challenge.gpg")


@keys.command("challenge")
@click.argument("fingerprint")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("challenge.gpg"), show_default=True)
def keys_challenge(fingerprint: str, out: Path) -> None:
    """Write a file, encrypted to the pending key, holding a random code."""
    with open_services(settings_from_env()) as services:
        out.write_bytes(services.keys.challenge(fingerprint, cli_actor()))
    click.echo(f"Wrote {out}. Carry it to the offline machine and run:\n"
               f"  tipbox-open keys prove {out.name}\n"
               f"then here: tipbox keys activate {fingerprint} --proof CODE")


@keys.command("activate")
@click.argument("fingerprint")
@click.option("--proof", help="The code `tipbox-open keys prove` printed.")
@click.option("--skip-proof-of-possession", "skip_proof", is_flag=True,
              help="DANGEROUS: activate with no proof that the secret key exists "
                   "(demonstrations and tests only; the audit log records it).")
def keys_activate(fingerprint: str, proof: str | None, skip_proof: bool) -> None:
    """Make a pending key ACTIVE: new items are encrypted to it from now on."""
    if not proof and not skip_proof:
        raise click.ClickException("Give the code from the challenge: --proof CODE")
    with open_services(settings_from_env()) as services:
        if skip_proof:
            services.keys.activate_without_proof(
                fingerprint, cli_actor(), "--skip-proof-of-possession on the command line")
        else:
            services.keys.activate(fingerprint, proof or "", cli_actor())
    click.echo(f"Key {fingerprint} is ACTIVE. Every new item is encrypted to it.")


@keys.command("retire")
@click.argument("fingerprint")
def keys_retire(fingerprint: str) -> None:
    """Stop encrypting to a key (refused if it is the last active one)."""
    with open_services(settings_from_env()) as services:
        services.keys.retire(fingerprint, cli_actor())
    click.echo(f"Key {fingerprint} is RETIRED. Keep its secret key: old items need it.")


def _day(ts: int | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat() if ts else "never"
