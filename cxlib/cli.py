"""The ``cx`` command line.

Every command prints a clear message and exits with status 2 on bad input (a
missing file, an invalid spec, data that do not match their spec) — never a
traceback. Heavy libraries load only inside the command that needs them, so
``cx --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cxlib import __version__
from cxlib.errors import CxError

EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """A click group that turns cxlib's input errors into a message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CxError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - last line of defence for users
            if os.environ.get("CX_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in cx; run again with CX_DEBUG=1 to see the traceback and report it.",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cx")
def cx() -> None:
    """Cx workbench: Bayesian customer-experience research from the command line."""


_study_option = click.option(
    "--study",
    "study_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The study spec (YAML).",
)


@cx.command()
@_study_option
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option(
    "--delimiter",
    default=None,
    help="Field delimiter of a text export (default: the spec's, or ',').",
)
@click.option(
    "--encoding", default=None, help="Text encoding of the export (default: the spec's, or utf-8)."
)
@click.option("--sheet", default=None, help="Excel sheet to read (default: the first).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate(
    study_path: Path, data: Path | None, delimiter, encoding, sheet, as_json: bool
) -> None:
    """Validate DATA against the study spec and print a data-quality report.

    DATA defaults to the spec's source.file. Exits 0 when the data are valid,
    2 with a message naming the file, columns, rows and values when not.
    """
    from cxlib.data import load_responses
    from cxlib.study import load_study

    study = load_study(study_path)
    responses = load_responses(study, data, delimiter=delimiter, encoding=encoding, sheet=sheet)
    report = responses.quality_report()
    click.echo(report.to_json() if as_json else report.to_text())


@cx.command()
@_study_option
@click.option(
    "--n", "n", type=click.IntRange(min=1), default=None, help="Respondents (default: the truth's)."
)
@click.option("--seed", type=int, default=None, help="Random seed (default: the truth's).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Output file (.parquet, .csv, .xlsx, .sav).",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="True parameters (YAML); default: plain loadings and paths.",
)
@click.option(
    "--continuous",
    is_flag=True,
    help="Write the continuous latent responses instead of answers on the scales.",
)
def simulate(study_path: Path, n, seed, out: Path, truth_path, continuous: bool) -> None:
    """Simulate survey responses for a study from known true parameters."""
    import time

    from cxlib.simulate import Truth, simulate_responses, write_responses
    from cxlib.study import load_study

    study = load_study(study_path)
    truth = Truth.from_yaml(truth_path) if truth_path else None
    start = time.perf_counter()
    frame = simulate_responses(study, truth, n=n, seed=seed, discretize=not continuous)
    elapsed = time.perf_counter() - start
    write_responses(frame, out)
    click.echo(
        f"simulated {len(frame):,} respondents x {len(study.item_names)} items in {elapsed:.1f} s -> {out}"
    )


@cx.command()
@click.option("--force", is_flag=True, help="Rebuild the data even when it exists.")
def sample(force: bool) -> None:
    """Build the sample study's data (a telecom CX tracker) if it is missing."""
    import hashlib

    from cxlib import config
    from cxlib.simulate import Truth, simulate_responses, write_responses
    from cxlib.study import load_study

    study = load_study(config.SAMPLE_STUDY)
    out = study.data_path
    stamp = out.with_name(f".{out.name}.source")
    digest = hashlib.sha256(
        config.SAMPLE_STUDY.read_bytes() + config.SAMPLE_TRUTH.read_bytes() + __version__.encode()
    ).hexdigest()
    if out.exists() and not force and stamp.exists() and stamp.read_text().strip() == digest:
        click.echo(f"sample study data up to date: {_shown(out)}")
        return
    truth = Truth.from_yaml(config.SAMPLE_TRUTH)
    frame = simulate_responses(study, truth)
    write_responses(frame, out)
    stamp.write_text(digest + "\n")
    click.echo(f"sample study data written: {_shown(out)} ({len(frame):,} respondents)")


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Run the ``cx`` command line; return its exit status."""
    try:
        cx.main(args=argv, prog_name="cx", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
