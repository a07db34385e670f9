"""``gradguide train``, ``gradguide recipes`` and ``gradguide demo``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from . import make_console


def register(sub: argparse._SubParsersAction, fmt: type) -> None:
    p = sub.add_parser(
        "train",
        help="train a generator from a recipe (name or .toml file)",
        description=(
            "Train with a recipe: a registered name (see `gradguide recipes`) or a TOML file.\n"
            "Data paths are arguments. Any recipe value can be overridden with --set, e.g.\n"
            "  gradguide train spsr_x4 --data-hr DIV2K/HR --val-hr Set5/HR --out runs/spsr\n"
            "  gradguide train spsr_x4 --data-hr imgs --set train.batch_size=2 --set model.backbone_config.nb=2\n"
            "  gradguide train --resume runs/spsr     (continue a run from its folder alone)\n"
            "Ctrl-C or SIGTERM saves a checkpoint at the next step and prints the command that resumes.\n"
            "Multi-GPU / multi-process: torchrun --nproc_per_node N $(which gradguide) train ...\n"
            "(train.batch_size is the global batch, split across processes)."
        ),
        formatter_class=fmt,
    )
    p.add_argument("recipe", metavar="RECIPE_OR_FILE", nargs="?", default=None,
                   help="recipe name or path to a .toml recipe (not needed with --resume RUN_DIR)")
    p.add_argument("--data-hr", metavar="DIR", help="folder of HR training images (LR made by MATLAB-style bicubic)")
    p.add_argument("--data-lr", metavar="DIR", help="folder of matching LR training images (optional)")
    p.add_argument("--val-hr", metavar="DIR", help="folder of HR validation images")
    p.add_argument("--val-lr", metavar="DIR", help="folder of matching LR validation images (optional)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<recipe name>)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides", help="override a recipe value, e.g. train.batch_size=8 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue exactly from RUN_DIR/state.pt (default RUN_DIR: --out); the recipe and "
                   "overrides recorded in RUN_DIR/recipe.toml are used when no RECIPE is given")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the recipe's train.device, 'auto')")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bitwise-reproducible CPU runs)")
    p.add_argument("--pretrained", metavar="FILE", help="initialise the backbone from this checkpoint (model.pretrained)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved recipe and exit")
    p.set_defaults(func=_train)

    r = sub.add_parser("recipes", help="list the registered training recipes", formatter_class=fmt)
    r.add_argument("--show", metavar="NAME", help="print one recipe's TOML")
    r.set_defaults(func=_recipes)

    d = sub.add_parser(
        "demo",
        help="train the quickstart recipe on bundled photos, upscale held-out ones, compare",
        description=(
            "The main job on embedded data: trains the quickstart recipe on scikit-image's bundled\n"
            "photos, upscales held-out photos, writes a comparison PNG (bicubic | gradguide | HR,\n"
            "with gradient maps) and prints a metrics table. About 5 minutes on 2 CPU cores."
        ),
        formatter_class=fmt,
    )
    d.add_argument("--out", metavar="DIR", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides", help="override a quickstart recipe value (repeatable)")
    d.add_argument("--device", help="cpu, cuda ... (default auto)")
    d.add_argument("--fresh", action="store_true", help="delete an earlier demo run in OUT first")
    d.set_defaults(func=_demo)


def resolve_for_cli(args: argparse.Namespace):
    """Recipe + CLI overrides (data paths, device, --set) -> validated recipe.

    Data folders given as flags are recorded as absolute paths, so that ``--resume RUN_DIR``
    works from any working directory."""
    from ..errors import DataError
    from ..train.recipe import apply_overrides, resolve_recipe

    recipe = _base_recipe(args)
    sets: list[str] = []
    for flag, key in (("data_hr", "data.hr"), ("data_lr", "data.lr"), ("val_hr", "data.val_hr"), ("val_lr", "data.val_lr")):
        value = getattr(args, flag, None)
        if value is not None:
            if not Path(value).is_dir():
                raise DataError(f"--{flag.replace('_', '-')} {value}: folder not found")
            sets.append(f"{key}={_toml_str(str(Path(value).absolute()))}")
    if getattr(args, "device", None):
        sets.append(f"train.device={args.device}")
    if getattr(args, "deterministic", False):
        sets.append("train.deterministic=true")
    if getattr(args, "pretrained", None):
        sets.append(f"model.pretrained={_toml_str(str(Path(args.pretrained).absolute()))}")
    recipe = apply_overrides(recipe, [*sets, *args.overrides], validate=True)
    if recipe.data.source == "folder" and recipe.data.hr and not Path(recipe.data.hr).is_dir():
        raise DataError(f"data.hr {recipe.data.hr}: folder not found")
    return recipe


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run_dir(args: argparse.Namespace) -> Optional[Path]:
    """The run folder ``--resume RUN_DIR`` names (None for a plain ``--resume`` or no resume)."""
    if isinstance(args.resume, str):
        return Path(args.resume)
    return None


def _base_recipe(args: argparse.Namespace):
    from ..errors import RecipeError
    from ..train.recipe import load_recipe, recipe_from_dict, resolve_recipe

    run = _run_dir(args)
    if args.recipe is not None:
        return resolve_recipe(args.recipe, validate=False)
    if run is None:
        raise RecipeError("train: give a RECIPE (name or .toml file), or --resume RUN_DIR to continue a run")
    if not run.is_dir():
        raise RecipeError(f"--resume {run}: no such run folder")
    recorded = run / "recipe.toml"
    if recorded.is_file():
        recipe = load_recipe(recorded, validate=False)
        recipe.source = f"{recorded} (recorded by the run)"
        return recipe
    from ..train.state import load_state_with_fallback
    from ..train.trainer import STATE_FILE

    state, used = load_state_with_fallback(run / STATE_FILE)
    recipe = recipe_from_dict(state["recipe"], source=f"{used} (recipe recorded in the state)")
    return recipe


def _out_dir(args: argparse.Namespace, recipe) -> Path:
    from ..errors import RecipeError

    run = _run_dir(args)
    if run is not None:
        if args.out and Path(args.out).absolute() != run.absolute():
            raise RecipeError(f"--out {args.out}: differs from --resume {run}; give one of them")
        return run
    return Path(args.out or Path("runs") / (recipe.name or "run"))


def resume_command(out: Path) -> str:
    """The exact command that continues the run in ``out``."""
    import shlex

    return f"gradguide train --resume {shlex.quote(str(Path(out).absolute()))}"


def _train(args: argparse.Namespace) -> int:
    from ..train.recipe import recipe_to_toml
    from ..train.trainer import STATE_FILE, train

    recipe = resolve_for_cli(args)
    if args.dry_run:
        print(recipe_to_toml(recipe), end="")
        return 0
    out = _out_dir(args, recipe)
    console = make_console()
    try:
        result = train(recipe, out, resume=bool(args.resume), console=console)
    except OSError as exc:
        from ..errors import BatchStopped, GradguideError
        from ..fileio import FATAL_WRITE_ERRNOS, os_reason
        from ..train.state import state_exists

        if isinstance(exc, GradguideError) or exc.errno not in FATAL_WRITE_ERRNOS:
            raise
        where = exc.filename or out
        if state_exists(out / STATE_FILE):
            then = f"the last complete checkpoint in {out} is kept; free space, then resume with: {resume_command(out)}"
        else:
            then = "no checkpoint was written yet"
        raise BatchStopped(f"{where}: {os_reason(exc)}; training stopped, {then}") from None
    say = lambda msg: console.print(msg, highlight=False, markup=False)  # noqa: E731
    ran = result.iteration - result.start_iteration
    if result.stopped in ("SIGINT", "SIGTERM", "time limit"):
        why = f"interrupted by {result.stopped}" if result.stopped != "time limit" else f"time limit ({recipe.train.time_limit_s:g} s)"
        if result.saved_iteration is not None:
            saved = f"saved {out / STATE_FILE} and {out / 'G_latest.safetensors'} at iteration {result.saved_iteration}"
        else:
            saved = "no checkpoint could be saved"
        say(f"{why} after {ran} iterations: {saved}; resume with: {resume_command(out)}")
        return {"SIGINT": 130, "SIGTERM": 143}.get(result.stopped, 0)
    if result.iteration and (out / "G_latest.safetensors").exists():
        span = f" ({result.start_iteration} -> {result.iteration})" if result.start_iteration else ""
        msg = f"done: {ran} iterations{span} in {result.seconds:.1f} s -> {out / 'G_latest.safetensors'}"
        if result.skipped_steps:
            msg += f" ({result.skipped_steps} non-finite steps skipped)"
        if result.best:
            msg += f"; best {result.best['metric']} {result.best['value']:.4f} at {result.best['iteration']} -> {out / 'G_best.safetensors'}"
        say(msg)
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..plugins import registries

    regs = registries().recipes
    if args.show:
        from ..train.recipe import recipe_to_toml, resolve_recipe

        print(recipe_to_toml(resolve_recipe(args.show)), end="")
        return 0
    table = Table(title="training recipes")
    table.add_column("name", style="bold")
    table.add_column("plugin")
    table.add_column("description")
    for name, entry in regs.items():
        table.add_row(name, regs.owner(name), entry.description)
    Console().print(table)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, overrides=args.overrides, device=args.device, fresh=args.fresh)
    return 0
