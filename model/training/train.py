"""Train a PixelCNN on MNIST or colour emoji and write it, with its model card, to
resources/models.

    pixelcnn-studio train --data ../shared/data/mnist --name gated-threshold --epochs 10
    pixelcnn-studio train --dataset emoji --name emoji-color --layers 8 --hidden-channels 48 \\
        --batch-size 32 --epochs 50 --hflip --time-budget 45

The emoji dataset (model/training/emoji.py) is rendered from the Noto Color Emoji font and
cached on first use: RGB, 24 x 24, 8 levels per channel by default, no classes.

The train split trains, the valid split picks the best weights (checked every epoch and at
every checkpoint), and the test split is scored once at the end for the card. The parts:
settings.py (the command line), checkpoints.py (the run's state), engine.py (eager or
compiled, fp32 or bf16), schedule.py (the learning rate), history.py (--init-from),
distributed.py (torchrun), model_card.py (what the card says); here, the loop. Checkpoints
hold only tensors and plain Python values, are written atomically, and are read back with
torch.load(weights_only=True); --resume continues from the last one exactly where it left off.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError
from ..distributions import nll_nats
from ..io import ModelFileError, save_model
from .checkpoints import (
    Run,
    checkpoint_path,
    new_run,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from .data import DatasetError
from .distributed import join, leave, replica_difference, wrap
from .engine import Engine, candidates, choose_engine, scorer_for
from .evaluate import (
    Float32Logits,
    UsageError,
    load_emoji_split,
    load_split,
    mean_nll_nats,
    resolve_device,
)
from .history import history_of, inherited_settings, load_initial
from .model_card import commands_from_card, final_card, notes_from_previous_card
from .settings import (
    EVAL_BATCH_SIZE,
    NO_CLASS,
    check_settings,
    data_levels,
    given_settings,
    resumed_settings,
    with_defaults,
)

# The loop


@dataclass
class Splits:
    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def load_splits(s: dict, device: torch.device) -> Splits:
    levels = data_levels(s)
    if s["dataset"] == "emoji":
        train, valid, test = (
            load_emoji_split(s["data"], split, levels, s["image_size"], limit)
            for split, limit in (("train", s["limit_train"]), ("valid", s["limit_eval"]),
                                 ("test", s["limit_eval"])))
        return Splits(tuple(t.to(device) for t in train), valid, test)
    train = load_split(s["data"], "train", s["mode"], levels, s["limit_train"])
    valid = load_split(s["data"], "valid", s["mode"], levels, s["limit_eval"])
    test = load_split(s["data"], "test", s["mode"], levels, s["limit_eval"])
    # MNIST as uint8 is ~40 MB: keep the training set on the device, no copy per batch.
    return Splits(tuple(t.to(device) for t in train), valid, test)


def batch_labels(run: Run, labels: torch.Tensor) -> torch.Tensor | None:
    """True labels, with a fraction replaced by "no class"; None for unconditional models."""
    if run.model.config.num_classes == 0:
        return None
    drop = torch.rand(len(labels), generator=run.shuffle) < run.settings["no_class_fraction"]
    return labels.masked_fill(drop.to(labels.device), NO_CLASS)


def train_step(run: Run, scorer: Float32Logits, x: torch.Tensor, labels) -> torch.Tensor:
    """One optimiser step; returns the batch's summed nats (a tensor, to avoid a sync)."""
    nats = nll_nats(scorer, x, labels)
    dims = x[0].numel()
    # Per dimension: the same optimum as per image, on a scale independent of image size.
    loss = nats.mean() / dims
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return nats.detach().sum()


def epochs_since_best(run: Run) -> float:
    """Epochs trained since the best validation so far (process 0 knows it)."""
    return run.epochs_done() - run.progress.best_step / run.steps_per_epoch


def validate(run: Run, splits: Splits, dtype, say) -> None:
    """Score the valid split, add a learning-curve point and keep the best weights."""
    p = run.progress
    valid_nats = mean_nll_nats(run.model, splits.valid[0], None, batch_size=EVAL_BATCH_SIZE,
                               autocast_dtype=dtype, network=run.scoring_network)
    train_nats = p.train_nats_sum / p.train_images if p.train_images else None
    p.learning_curve.append({
        "step": p.step, "epoch": round(run.epochs_done(), 4),
        "minutes": round(run.minutes(), 3), "train_nats": train_nats, "valid_nats": valid_nats,
    })
    p.train_nats_sum, p.train_images = 0.0, 0
    best = valid_nats < p.best_valid_nats
    if best:
        p.best_valid_nats, p.best_step = valid_nats, p.step
        p.best_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    train_text = "-" if train_nats is None else f"{train_nats:.2f}"
    say(f"epoch {run.epochs_done():.2f}, step {p.step}: train {train_text}, "
        f"valid {valid_nats:.2f} nats per image" + (" (best so far)" if best else ""))


@dataclass
class Session:
    """This invocation's clock, speed and progress bar: nothing here is checkpointed."""

    bar: object
    deadline: float | None  # time.monotonic() when the time budget ends
    last_checkpoint: float = field(default_factory=time.monotonic)
    last_step: float = field(default_factory=time.monotonic)
    images: int = 0
    seconds: float = 0.0  # in training steps only, for images per second

    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def seconds_left(self, now: float) -> float | None:
        return None if self.deadline is None else self.deadline - now


def pick_engine(run: Run, train_split, say) -> tuple[Engine, Float32Logits, list]:
    """The fastest engine among --compile x --precision, timed on one real training batch
    (drawn without touching the run's own random streams)."""
    s = run.settings
    engines = candidates(s["compile"], s["precision"], run.device)
    images, labels = train_split
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    index = index[:s["batch_size"]].to(run.device)
    x, y = images[index].long(), labels[index]
    if run.model.config.num_classes:
        y = y.masked_fill(torch.arange(len(y), device=y.device) % 5 == 0, NO_CLASS)
    else:
        y = None
    if len(engines) > 1:
        say(f"Timing {len(engines)} ways to train on this host "
            f"({', '.join(map(str, engines))}):")
    engine, scorer, timings = choose_engine(run.model, x, y, engines, say)
    if run.world.distributed:  # process 0's choice, around the DDP-wrapped model
        engine = engines[int(run.world.agree([engines.index(engine)])[0])]
        scorer = scorer_for(run.model, engine, wrap(run.model, run.world))
    say(f"Training {engine}." if not timings else
        f"Training {engine}: {max(t.images_per_second for t in timings if t.images_per_second)}"
        " images/s in the timing.")
    return engine, scorer, timings


def train(run: Run, splits: Splits) -> dict:
    """Train to the planned epochs or the time budget; returns this invocation's speed and
    how it trained."""
    s, p = run.settings, run.progress
    world = run.world
    say = _stderr if world.writes else _silent
    engine, scorer, timings = pick_engine(run, splits.train, say)
    if engine.compiled:  # scoring 10,000 images eagerly took as long as a quarter epoch
        run.scoring_network = torch.compile(run.model, dynamic=False)
    deadline = None if s["time_budget"] is None else run.started + s["time_budget"] * 60
    bar = (progress_bar(total=s["epochs"] * run.steps_per_epoch, initial=p.step)
           if world.writes else _SilentBar())
    session = Session(bar, deadline)
    out_of_time = stalled = False
    while p.epoch < s["epochs"] and not out_of_time and not stalled:
        out_of_time = train_until_pause(run, splits.train, scorer, session)
        epoch_ended = p.step_in_epoch == run.steps_per_epoch
        if epoch_ended:
            p.epoch, p.step_in_epoch, p.order = p.epoch + 1, 0, None
        if world.writes:
            # Validation at each epoch's end and at the budget's, not at every checkpoint:
            # scoring 10,000 digits takes minutes, a checkpoint a moment.
            if epoch_ended or out_of_time:
                validate(run, splits, engine.autocast_dtype, session.bar.write)
            save_checkpoint(run)
        stalled = bool(world.agree([epochs_since_best(run) >= (s["patience"] or math.inf)])[0])
        world.barrier()
        session.last_checkpoint = time.monotonic()
    session.bar.close()
    if out_of_time:
        say(f"Time budget of {s['time_budget']} minutes reached after {p.step} steps, "
            f"the learning rate annealed to {run.scheduler.factor():.3g} x --lr; stopping.")
    if stalled:
        say(f"Validation has not improved for {epochs_since_best(run):.2f} epochs (best "
            f"{p.best_valid_nats:.2f} nats per image at step {p.best_step}); stopping with "
            "those weights.")
    return {"images_per_second": round(session.images_per_second() * world.size, 1),
            "stopped": "validation stalled" if stalled else "time budget" if out_of_time
            else "epochs",
            "precision": engine.precision, "compiled": engine.compiled,
            "engine_timings": [{"engine": str(t.engine), "images_per_second":
                                t.images_per_second, "seconds": t.seconds,
                                **({"error": t.error} if t.error else {})} for t in timings]}


def train_until_pause(run: Run, train_split, scorer: Float32Logits, session: Session) -> bool:
    """Steps until the epoch ends or a checkpoint is due; True if time ran out first."""
    s, p = run.settings, run.progress
    images, labels = train_split
    if p.order is None:
        p.order = torch.randperm(len(images), generator=run.shuffle)
    pending = torch.zeros((), device=run.device)  # summed nats, read back only now and then
    out_of_time = False
    while p.step_in_epoch < run.steps_per_epoch and not out_of_time:
        started = time.monotonic()
        start = p.step_in_epoch * s["batch_size"]
        index = p.order[start:start + s["batch_size"]].to(run.device)
        x = images[index].long()
        if s["hflip"]:
            mirror = torch.rand(len(index), generator=run.shuffle) < 0.5
            x = torch.where(mirror.to(run.device)[:, None, None, None], x.flip(-1), x)
        # The whole global batch's random draws above, then this process's share of it.
        y = batch_labels(run, labels[index])
        x, y = run.world.shard(x), run.world.shard(y)
        pending += train_step(run, scorer, x, y)
        p.step, p.step_in_epoch = p.step + 1, p.step_in_epoch + 1
        p.train_images += len(index)  # the global batch: its nats are summed over processes
        session.images += len(x)
        now = time.monotonic()
        session.seconds += now - started
        # The schedule's share of this step counts the pauses since the last one too.
        run.scheduler.step(now - session.last_step, session.seconds_left(now))
        session.last_step = now
        session.bar.update(1)
        if p.step % 20 == 0:
            p.train_nats_sum += run.world.total(pending).item()
            pending.zero_()
            show_speed(run, session)
        left = session.seconds_left(now)
        pause = now - session.last_checkpoint >= s["checkpoint_minutes"] * 60
        out_of_time = left is not None and left <= 0
        if run.world.distributed:  # process 0's clock decides for every process
            position, out_of_time, pause = run.world.agree(
                [run.scheduler.position, out_of_time, pause])
            run.scheduler.set_position(position)
        if pause:
            break
    p.train_nats_sum += run.world.total(pending).item()
    show_speed(run, session)
    return out_of_time


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _silent(text: str) -> None:
    pass


def show_speed(run: Run, session: Session) -> None:
    p = run.progress
    session.bar.set_postfix_str(
        f"epoch {run.epochs_done():.2f}, "
        f"loss {p.train_nats_sum / max(1, p.train_images):.2f} nats/image, "
        f"{session.images_per_second() * run.world.size:.0f} images/s")


def progress_bar(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the "train" extra; training works without it
        return _SilentBar()
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


class _SilentBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr)

    def close(self) -> None:
        pass


# Entry point


def prepare(argv: list[str]) -> tuple[Run, Splits]:
    given = given_settings(argv)
    settings = with_defaults(given)
    checkpoint = None
    initial = None
    if settings["resume"]:
        checkpoint = read_checkpoint(checkpoint_path(settings))
        settings = resumed_settings(checkpoint["settings"], given)
    elif settings["init_from"] is not None:
        initial = load_initial(settings["init_from"])
        settings = with_defaults({**given, **inherited_settings(initial[1], given)})
    elif checkpoint_path(settings).exists():
        # Starting afresh would overwrite it: maybe hours of training.
        raise UsageError(f"{checkpoint_path(settings)} already exists; pass --resume to continue "
                         "that run, or delete it or pick another --checkpoint-dir to start anew.")
    check_settings(settings)
    device = resolve_device(settings["device"])
    world = join(device)
    splits = load_splits(settings, device)
    run = new_run(settings, device, len(splits.train[0]))
    run.world = world
    if initial is not None:
        model, card, _ = initial
        run.model.load_state_dict(model.state_dict())
        run.progress.history = history_of(card, settings["init_from"])
    if checkpoint is not None:
        restore(run, checkpoint)
        if "commands" not in checkpoint:  # saved with this run's checkpoints from now on
            run.progress.commands = commands_from_card(
                Path(settings["output_dir"]) / settings["name"])
    run.progress.commands.append("pixelcnn-studio train " + shlex.join(argv))
    return run, splits


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run, splits = prepare(argv)
        speed = train(run, splits)
    except (UsageError, DatasetError, ModelFileError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return finish(run, splits, speed)
    finally:
        leave(run.world)


def finish(run: Run, splits: Splits, speed: dict) -> int:
    """Check the replicas agree, then (process 0) score the best weights and write them."""
    difference = replica_difference(run.model, run.world)
    if not run.world.writes:
        run.world.barrier()  # leave together, once process 0 has written the model
        return 0
    if run.world.distributed:
        speed["distributed"] = {**run.world.describe(run.settings["batch_size"]),
                                "replica_max_difference": difference}
    if run.progress.best_state is not None:
        run.model.load_state_dict(run.progress.best_state)
    card = final_card(run, splits, speed)
    destination = Path(run.settings["output_dir"]) / run.settings["name"]
    if run.settings["resume"] or run.settings["init_from"]:
        kept = notes_from_previous_card(destination, card)
        if kept:
            print("kept from the previous card, check they still hold: " + ", ".join(kept))
    weights_path, _ = save_model(run.model, destination, **card)
    run.world.barrier()
    print(f"{card['name']}: {card['epochs']:.2f} epochs, {card['steps']} steps in "
          f"{card['wall_minutes']:.1f} min at {card['training']['images_per_second']:.0f} "
          f"images/s; valid {card['valid_nll_nats']:.2f}, test {card['test_nll_nats']:.2f} "
          f"nats per image ({card['test_bits_per_dim']:.4f} bits/dim); saved {weights_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
