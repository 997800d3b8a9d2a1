"""`riskstrat key`: create the pseudonymisation key (once) and show its fingerprint."""

from __future__ import annotations

from pathlib import Path

import typer

from riskstrat.cli.app import App, app, out

key_app = App(help="The pseudonymisation key: create it once, keep it secret, use it every month.\n\n"
                   "Example: riskstrat key init", no_args_is_help=True)
app.add_typer(key_app, name="key")

_KEY_FILE_HELP = "Key file to create (default .riskstrat/pseudonym.key under the current folder)."


@key_app.command("init")
def init(key_file: Path | None = typer.Option(None, "--key-file", help=_KEY_FILE_HELP)) -> None:
    """Create a random pseudonymisation key file (mode 0600); refuses to overwrite one.

    Example: riskstrat key init --key-file /secure/riskstrat/pseudonym.key
    """
    from riskstrat.pipelines.commands import create_key

    path, fingerprint = create_key(key_file)
    out.print(f"created {path} (readable by you only; fingerprint {fingerprint}). Keep it secret and back it up: "
              f"without it next month's pseudonyms will not match this month's.", soft_wrap=True)


@key_app.command("fingerprint")
def fingerprint(key_file: Path | None = typer.Option(None, "--key-file", help="Key file (default: "
                                                     "$RISKSTRAT_PSEUDONYM_KEY, else .riskstrat/pseudonym.key).")) -> None:
    """Print the configured key's fingerprint (compare it with dataset.json's pseudonym_key_fingerprint).

    Example: riskstrat key fingerprint --key-file /secure/riskstrat/pseudonym.key
    """
    from riskstrat.pipelines.commands import key_fingerprint_of

    out.print(key_fingerprint_of(key_file))

