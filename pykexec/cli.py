"""Command-line entry point (grows with the loader issues)."""

import sys

import click

from pykexec import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", message="pykexec %(version)s")
def main():
    """pykexec: a kexec loader."""
    click.echo("pykexec: no action given (see --help)", err=True)
    sys.exit(1)
