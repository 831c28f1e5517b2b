"""`linearsr info`: versions, devices, the dtype decision and the installed weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from linearsr_cli.cli.app import app


@app.command()
def info(
    weights: Annotated[Path | None, typer.Option(help="Weights file to describe (default: the installed one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Print versions, devices, dtypes and the installed weights."""
    import json

    from linearsr_cli.engine.info import system_info

    report = system_info(weights)
    if json_out:
        print(json.dumps(report, indent=1))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):  # shipped_weights
            print(f"{key}:")
            for entry in value:
                parts = [f"x{entry['scale']}"]
                if "priors" in entry:
                    parts.append("priors " + "/".join(entry["priors"]))
                parts.append(entry.get("error") or entry["router"])
                print(f"  {entry['file']}: {', '.join(parts)}")
        else:
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
