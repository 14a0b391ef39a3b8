"""Complete pictures from the command line, without a window and without importing Qt.

    python main.py complete INPUT... --output DIR (--mask MASK | --erase-below ROW)
        [--model NAME] [--candidates N] [--seed S] [--temperature T]
        [--class auto|likely|drawn|any|C]
        [--sampler fast|reference] [--device cpu|cuda|mps] [--invert auto|yes|no]
        [--rerank N [--rerank-method resample|best]] [--json]

Each INPUT, an image or a folder of them, is read as the app reads an opened picture:
fitted to the model's size and levels, dark-on-light pictures inverted to the model's light
ink on black (`--invert`). Which pixels to complete is required, as one of:

- `--mask MASK`: a picture whose white (>= 128) pixels are completed, one for every input
  or a folder with one per input under the input's name (or its stem with `.png`); it is
  the model's size or its input's size (then fitted the same way);
- `--erase-below ROW`: every pixel from model row ROW (0 = the top) down.

The N candidates of an input are sampled as one batch and written, in the model's
convention, as `DIR/<stem>.png` (N = 1) or `DIR/<stem>-<k>.png` (k = 1..N); each written
path is printed on its own line, or `--json` prints one summary object instead. One `--seed`
applies to every input, so each input's result does not depend on the others.

`--rerank N` makes the completion respect the whole picture (see model/rerank.py): N
candidates are sampled as one batch, each scored by the model's likelihood of the entire
image, including the known pixels after a hole, and one is written as `DIR/<stem>.png`:
one resampled in proportion to the likelihood of what lies after the hole ("resample", the
default) or the most likely ("best").

Every input, mask and the model are read before anything is sampled, so a bad one stops
the run before any file is written. Exit status: 0 when every file was written; 2 for bad
arguments or an unreadable input, mask or model file (each problem is printed, naming its
file); 1 when an output cannot be written; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .devices import choice_for, completion_device
from .images import (
    IMAGE_SUFFIXES,
    INVERT_CHOICES,
    ImageFileError,
    load_image,
    load_mask,
    write_png,
)
from .io import ModelFileError, load_model, model_paths
from .memory import MemoryLimitError, check_candidates_fit
from .posterior import AUTO_POLICIES
from .registry import DEFAULT_MODEL, bundled_models, resolve_model
from .rerank import METHODS, rerank
from .sampling import SAMPLERS, complete
from .task import DEVICES


class BadInput(Exception):
    """Arguments or files that make the run impossible: each problem names its file."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Job:
    """One input, read and ready to complete."""

    path: Path
    values: np.ndarray  # (C, H, W) levels
    to_complete: np.ndarray  # (H, W) bools


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    try:
        args = parse_arguments(argv)
        model, model_name = read_model(args.model or DEFAULT_MODEL)
        check_options(args, model.config)
        device = choose_device(model, args.device)
        jobs = read_inputs(args, model.config)
        output = make_output_folder(Path(args.output), jobs, args)
    except SystemExit as stop:  # argparse has printed the usage and the problem (or --help)
        return int(stop.code or 0)
    except BadInput as bad:
        for problem in bad.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2

    summary = []
    try:
        for job in jobs:
            summary.append(complete_one(job, model, device, output, args))
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        written = sum(len(s["files"]) for s in summary)
        print(f"Stopped: {written} files were written.", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({
            "model": model_name,
            "sampler": args.sampler,
            "device": str(device),
            "device_reason": (choice_for(model).reason() if args.device in (None, "auto")
                              else "asked for"),
            "files": [name for s in summary for name in s["files"]],
            "pixels_completed": sum(s["pixels_completed"] for s in summary),
            "seconds": round(time.perf_counter() - started, 3),
            "completions": summary,
        }, indent=2))
    return 0


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio complete", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 done, 2 bad arguments or unreadable inputs, 1 cannot write.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for the completions (created if missing)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--mask", metavar="MASK",
                       help="picture whose white pixels are completed, or a folder of them")
    which.add_argument("--erase-below", type=whole_number(0), metavar="ROW",
                       help="complete every pixel from this model row down (0 = the top)")
    parser.add_argument("--model", metavar="NAME",
                        help=f"bundled model or .safetensors path (default: {DEFAULT_MODEL})")
    parser.add_argument("--candidates", type=whole_number(1), default=1, metavar="N",
                        help="completions per input, sampled as one batch (default: 1)")
    parser.add_argument("--seed", type=whole_number(0), metavar="S",
                        help="random seed, the same for every input (default: a new one)")
    parser.add_argument("--temperature", type=temperature, default=1.0, metavar="T",
                        help="below 1 sharper, above 1 more varied, 0 most likely (default: 1)")
    parser.add_argument("--class", dest="class_label", type=class_choice, default="auto",
                        metavar="C",
                        help="for class-conditional models: a class number; 'auto' (the "
                             "default) reads it from the picture, the most likely class for "
                             "one completion and one drawn from the posterior per candidate "
                             "for several; 'likely' or 'drawn' for one of those always; "
                             "'any' for none")
    parser.add_argument("--sampler", choices=SAMPLERS, default="fast")
    parser.add_argument("--device", choices=DEVICES,
                        help="default (auto): the device measured fastest for this model "
                             "(a few hundred pixels on each; the CPU where it is the only one)")
    parser.add_argument("--invert", choices=INVERT_CHOICES, default="auto",
                        help="invert inputs to light ink on black (default: auto, "
                             "when the border is light)")
    parser.add_argument("--rerank", type=whole_number(2), metavar="N",
                        help="sample N completions and keep the one that fits the whole "
                             "picture, including known pixels after a hole")
    parser.add_argument("--rerank-method", choices=METHODS, default="resample",
                        help="with --rerank: resample in proportion to the likelihood of "
                             "the pixels after the hole (the default), or keep the most "
                             "likely (best)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON summary instead of the written paths")
    args = parser.parse_args(argv)
    if args.mask is None and args.erase_below is None:
        parser.error("say which pixels to complete: give --mask MASK or --erase-below ROW")
    if args.rerank is not None and args.candidates > 1:
        parser.error("--rerank writes the one completion it keeps; it does not combine "
                     "with --candidates")
    return args


def whole_number(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value
    return parse


def class_choice(text: str):
    """--class: a class number, one of the "auto" policies, or "any" (None: no class)."""
    if text in AUTO_POLICIES:
        return text
    if text == "any":
        return None
    try:
        return whole_number(0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a class number nor one of {', '.join(AUTO_POLICIES)}, "
            "any") from None


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of 0 or more")
    return value


def read_model(name: str):
    """The model and the name it was asked for by."""
    path = resolve_model(name)
    weights, card = model_paths(path)
    if not weights.exists() and not card.exists():
        raise BadInput([f"No model {name!r}: it is neither a bundled model "
                        f"({', '.join(bundled_models()) or 'none is installed'}) "
                        "nor a model file (.safetensors beside its .json)."])
    try:
        return load_model(path), name
    except ModelFileError as error:
        raise BadInput([f"Cannot load the model: {error}"]) from error


def check_options(args: argparse.Namespace, config) -> None:
    try:
        check_candidates_fit(config, max(args.candidates, args.rerank or 1))
    except MemoryLimitError as error:
        option = "--rerank" if args.rerank else "--candidates"
        raise BadInput([f"{option}: {error}"]) from None
    if args.erase_below is not None and args.erase_below > config.height:
        raise BadInput([f"--erase-below {args.erase_below} is below the model's "
                        f"{config.height} rows; give a row from 0 to {config.height}."])
    if isinstance(args.class_label, int) and args.class_label >= config.num_classes:
        have = (f"has classes 0 to {config.num_classes - 1}" if config.num_classes
                else "is not class-conditional")
        raise BadInput([f"--class {args.class_label} is not available: the model {have}."])


def choose_device(model, name: str | None):
    try:
        return completion_device(model, name)
    except RuntimeError as error:  # the device asked for is not there
        raise BadInput([str(error)]) from error


def read_inputs(args: argparse.Namespace, config) -> list[Job]:
    """Every input with what to complete in it; all problems at once, or none."""
    problems: list[str] = []
    paths = input_paths(args.inputs, problems)
    jobs = []
    for path in paths:
        try:
            values = load_image(path, config.height, config.width, config.channels,
                                config.levels, args.invert)
            if args.mask is not None:
                mask = mask_path(Path(args.mask), path)
                to_complete = load_mask(mask, config.height, config.width, image=path)
            else:
                to_complete = np.zeros((config.height, config.width), bool)
                to_complete[args.erase_below:] = True
        except ImageFileError as error:
            problems.append(str(error))
            continue
        jobs.append(Job(path, values, to_complete))
    if problems:
        raise BadInput(problems)
    return jobs


def input_paths(names: list[str], problems: list[str]) -> list[Path]:
    """The files named, and the images in the folders named, with distinct stems."""
    paths = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            paths.append(path)  # a missing or unreadable file is reported when read
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            problems.append(f"{path} is a folder with no images "
                            f"({', '.join(IMAGE_SUFFIXES)}) in it.")
        paths += found
    first_with_stem: dict[str, Path] = {}
    for path in paths:
        other = first_with_stem.setdefault(path.stem, path)
        if other is not path:
            problems.append(f"{other} and {path} would both be written as {path.stem}.png; "
                            "rename one, or complete them in separate runs.")
    return paths


def mask_path(mask: Path, image: Path) -> Path:
    """The mask for `image`: `mask` itself, or its file in the folder `mask`."""
    if not mask.is_dir():
        return mask
    for candidate in (mask / image.name, mask / f"{image.stem}.png"):
        if candidate.is_file():
            return candidate
    raise ImageFileError(f"{mask} holds no mask for {image} "
                         f"(looked for {image.name} and {image.stem}.png).")


def output_names(stem: str, candidates: int) -> list[str]:
    if candidates == 1:
        return [f"{stem}.png"]
    return [f"{stem}-{k}.png" for k in range(1, candidates + 1)]


def make_output_folder(output: Path, jobs: list[Job], args: argparse.Namespace) -> Path:
    """The output folder, created; refused if a completion would overwrite an input."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput([f"Cannot create the output folder {output}: "
                        f"{error.strerror or error}."]) from error
    read = {job.path.resolve() for job in jobs}
    if args.mask is not None:
        read |= {mask_path(Path(args.mask), job.path).resolve() for job in jobs}
    clashes = [output / name for job in jobs
               for name in output_names(job.path.stem, args.candidates)
               if (output / name).resolve() in read]
    if clashes:
        raise BadInput([f"{path} would be overwritten by a completion; choose another "
                        "--output folder." for path in clashes])
    return output


def complete_one(job: Job, model, device, output: Path, args: argparse.Namespace) -> dict:
    """Sample the input's candidates as one batch and write them; a summary of what was done."""
    options = dict(sampler=args.sampler, temperature=args.temperature, seed=args.seed,
                   class_label=args.class_label, device=device)
    extra = {}
    if args.rerank is not None:
        ranked = rerank(model, job.values, ~job.to_complete, candidates=args.rerank,
                        method=args.rerank_method, **options)
        images, seed = ranked.image[None], ranked.seed
        classes = ranked.choice
        extra = {"rerank": {
            "candidates": args.rerank, "method": ranked.method, "chosen": ranked.index + 1,
            "class": ranked.class_labels[ranked.index],
            "image_loglik": round(float(ranked.image_loglik[ranked.index]), 3),
            "evidence_loglik": round(float(ranked.evidence_loglik[ranked.index]), 3)}}
        used = [ranked.class_labels[ranked.index]]
    else:
        completion = complete(model, job.values, ~job.to_complete,
                              candidates=args.candidates, **options)
        images, seed = completion.run(), completion.seed  # (candidates, C, H, W)
        classes, used = completion.task.classes, list(completion.task.class_labels)
    files = []
    for name, image in zip(output_names(job.path.stem, args.candidates), images, strict=True):
        path = output / name
        write_png(path, image, model.config.levels)
        files.append(str(path))
        if not args.json:
            print(path, flush=True)
    return {"input": str(job.path), "files": files, "seed": seed,
            "pixels_completed": int(job.to_complete.sum()) * len(images),
            "classes": class_summary(classes, used, model.config.num_classes), **extra}


def class_summary(classes, used: list, num_classes: int) -> dict:
    """What --json says of the classes: how they were chosen, the posterior they came from
    (p(class | the known pixels before the first unknown one)) and each output's class."""
    summary = {"policy": classes.policy, "used": used}
    if num_classes == 0:
        summary["note"] = "the model has no classes: completed without one"
    if classes.posterior is not None:
        summary["posterior"] = [round(float(p), 4) for p in classes.posterior]
    return summary
