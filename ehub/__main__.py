"""``python -m ehub``: the CLI without relying on the installed script."""

from ehub.cli import run_cli

if __name__ == "__main__":
    run_cli()
