"""The ``vicap`` command. Imports stay inside the commands: feast, ray and torch are slow to load."""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="vicap: KRX Volatility Interruption (VI, 변동성완화장치) capture, learning and trading.",
)


@app.command()
def demo(seed: int = typer.Option(7, help="random seed of the demo session")) -> None:
    """Run the end-to-end demo on the embedded default (what exists so far)."""
    from vicap.demo import run_demo

    raise typer.Exit(run_demo(seed=seed))


@app.command()
def rules() -> None:
    """Print and self-check the KRX rules (ticks, limits, VI bands, taxes, calendar)."""
    from vicap.demo import rules_self_check

    raise typer.Exit(0 if rules_self_check() else 1)


if __name__ == "__main__":
    app()
