"""`tipbox backup` and `tipbox restore`: an encrypted copy of a running instance, and
putting one back onto an empty data folder."""

from __future__ import annotations

from pathlib import Path

import click

from tipbox.cli.services import errors_as_next_steps, open_services, settings_from_env


@click.command()
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The backup file to write (must not exist yet).")
@click.option("--recipient-key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Encrypt to the public key in this file instead of a passphrase (for "
                   "backups from a timer). Its secret half is needed to restore.")
def backup(out: Path, recipient_key: Path | None) -> None:
    """Back up the running instance: database, ciphertext store, instance secrets and
    public keys, encrypted, into one file. The services keep running."""
    from tipbox.backup.archive import make_backup
    from tipbox.backup.encryption import Encryption, check_passphrase

    settings = settings_from_env()
    with open_services(settings), errors_as_next_steps():
        if recipient_key is not None:
            encryption = Encryption(recipient_file=recipient_key.resolve())
        else:
            passphrase = _ask_passphrase(confirm=True)
            check_passphrase(passphrase)
            encryption = Encryption(passphrase=passphrase)
        made = make_backup(settings, out.resolve(), encryption)
    if made.swept:
        click.echo(f"Removed {made.swept} unfinished file(s) that interrupted backups had left "
                   f"in {out.resolve().parent}.")
    click.echo(f"Backup written: {made.path} ({made.size} bytes; {made.files} store file(s), "
               f"{made.key_files} key file(s)).")
    if made.gone:
        click.echo(f"{made.gone} file(s) were deleted while the backup ran; a restore leaves "
                   "them out, as they are now.")
    if recipient_key is None:
        click.echo("Keep the passphrase apart from the backup: without it the backup cannot "
                   "be restored, and with it anyone holding the file can read the instance "
                   "secrets.")


@click.command()
@click.argument("backup_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--gnupghome", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="For a backup made with --recipient-key: the GnuPG home that holds the "
                   "secret key.")
def restore(backup_file: Path, gnupghome: Path | None) -> None:
    """Restore a backup into an EMPTY data folder (TIPBOX_DATA_DIR) and, for PostgreSQL,
    an empty database. A folder or database in use is never overwritten."""
    from tipbox.backup.restore import refuse_live_target, restore_backup

    settings = settings_from_env()
    with errors_as_next_steps():
        # Before the passphrase is asked: no point typing it for a target that is refused.
        refuse_live_target(settings)
        passphrase = None if _made_for_a_key(backup_file) else _ask_passphrase(confirm=False)
        done = restore_backup(settings, backup_file.resolve(), passphrase=passphrase,
                              gnupghome=gnupghome.resolve() if gnupghome else None)
    click.echo(f"Restored into {settings.data_dir}: the {done.database} database and "
               f"{done.files} store file(s).")
    if done.gone:
        click.echo(f"{done.gone} item(s) or reply(ies) deleted while the backup ran were left "
                   "out, with their rows.")
    if done.keys_placed:
        click.echo(f"{done.keys_placed} public key file(s) written into {settings.keys_dir}.")
    elif done.keys_folder_kept:
        click.echo(f"{settings.keys_dir} already holds keys and was left as it is; the "
                   "database holds every registered key anyway.")
    click.echo("Next: run `tipbox init` (it brings the database up to this version of "
               "tipbox), then `tipbox doctor`, then start the services.")


def _ask_passphrase(*, confirm: bool) -> bytes:
    # hide_input: never echoed; asked twice when making a backup, as a typo there would
    # make the backup unreadable.
    text = click.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm)
    return str(text).encode()


def _made_for_a_key(path: Path) -> bool:
    """Whether the backup's first OpenPGP packet is a public-key encrypted session key
    (tag 1) rather than a passphrase's (tag 3)."""
    with path.open("rb") as fh:
        first = fh.read(1)
    if not first or not first[0] & 0x80:
        return False
    tag = first[0] & 0x3F if first[0] & 0x40 else (first[0] >> 2) & 0x0F
    return tag == 1
