"""The ``tipbox`` command: init, serve, demo."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from tipbox.config import REPO_ROOT, Settings
from tipbox.errors import ConfigError, TipboxError

DEMO_OFFLINE_DIR = REPO_ROOT / "demo-offline"
DEMO_KEY_NAME = "tipbox DEMO newsroom key - NOT SECRET, NOT FOR REAL SOURCES"
DEMO_KEY_FILE = "DEMO-newsroom-key.asc"


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """tipbox: anonymous, encrypted tip submission for newsrooms."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%Y-%m-%d %H:%M")


@main.command()
def init() -> None:
    """Create the data folder, the instance secrets and the database (safe to re-run)."""
    settings = _settings()
    initialise(settings)
    click.echo(f"Data folder ready: {settings.data_dir}")


def initialise(settings: Settings) -> None:
    from tipbox.db import upgrade
    from tipbox.instance import InstanceSecrets
    from tipbox.storage import CiphertextStore

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    InstanceSecrets.load_or_create(settings.secrets_file)
    CiphertextStore(settings.store_dir).sweep_temp()
    upgrade(settings.database_url)


@main.command()
@click.argument("interface", type=click.Choice(["source"]))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(interface: str, host: str, port: int) -> None:
    """Serve an interface with gunicorn."""
    _serve(_settings(), interface, host, port)


def _serve(settings: Settings, interface: str, host: str, port: int) -> None:
    from tipbox.db import is_current, make_engine
    from tipbox.serve import serve as run_server
    from tipbox.web.source import create_source_app

    if not settings.secrets_file.exists():
        raise click.ClickException(f"{settings.data_dir} is not initialised: run `tipbox init`.")
    if not is_current(make_engine(settings.database_url)):
        raise click.ClickException("The database schema is out of date: run `tipbox init`.")
    try:
        app = create_source_app(settings)
    except TipboxError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tipbox {interface} interface: http://{host}:{port}/", err=True)
    run_server(app, host, port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Set up only; do not start the server.")
@click.option("--offline-dir", type=click.Path(path_type=Path), default=DEMO_OFFLINE_DIR,
              show_default=True, help="Stands for the air-gapped machine: gets the secret key.")
def demo(host: str, port: int, no_serve: bool, offline_dir: Path) -> None:
    """Set up a DEMONSTRATION instance with a throwaway key pair, then serve it."""
    settings = _settings()
    ensure_demo_key(settings.keys_dir, offline_dir)
    initialise(settings)
    if not no_serve:
        _serve(settings, "source", host, port)


def ensure_demo_key(keys_dir: Path, offline_dir: Path) -> None:
    """Make a demo key pair unless the keys folder already has a key."""
    from tipbox.crypto.gpg import GnuPG
    from tipbox.crypto.keys import KEY_SUFFIXES

    keys_dir.mkdir(parents=True, exist_ok=True)
    if any(p.suffix in KEY_SUFFIXES for p in keys_dir.iterdir()):
        click.echo(f"Using the key(s) already in {keys_dir}.", err=True)
        return
    gpg = GnuPG(offline_dir / "gnupg")
    fpr = gpg.generate_key(DEMO_KEY_NAME, "demo-newsroom@tipbox.invalid", passphrase=None,
                           expire="1y")
    (keys_dir / DEMO_KEY_FILE).write_text(str(gpg.export_public(fpr)))
    banner = "!" * 78
    click.echo("\n".join([
        banner,
        "  DEMO KEY CREATED - FOR DEMONSTRATION ONLY",
        f"  Fingerprint: {fpr}",
        f"  Public key:  {keys_dir / DEMO_KEY_FILE}",
        f"  Secret key:  {offline_dir / 'gnupg'} (stands for the air-gapped machine)",
        "  Its secret key sits unprotected on this machine. Never let a real source",
        "  use an instance that encrypts to it. See docs/admin-guide.md for real keys.",
        banner,
    ]), err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
