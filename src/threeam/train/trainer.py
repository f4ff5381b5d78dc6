"""The model-agnostic training engine.

A :class:`Trainer` gets

* ``model``: an ``nn.Module`` whose parameter names the config's optimizer groups refer to;
* ``step_fn(model, batch) -> dict[str, Tensor]``: the forward pass and losses of one
  micro-batch; the dict must hold the scalar ``"loss"`` that is back-propagated (other entries,
  e.g. ``"loss_mask"``, are logged);
* ``sources``: ``{name: factory}`` with ``factory(position, ctx) -> Iterator[batch]`` yielding this
  rank's batches of that source starting at its ``position``-th batch (:class:`IndexedSource`
  builds such a factory from an indexable dataset);
* a :class:`~threeam.train.config.TrainConfig`.

Each optimizer step draws ``run.grad_accum_steps`` micro-batches; the source of each is picked by
a seeded :class:`MixtureSampler` with the configured mixing weights (the same choice on every
rank). Losses are divided by the accumulation count, gradients are clipped, then AdamW and the
learning-rate schedule step. bf16 autocast is used on CUDA only.

Checkpoints (:mod:`threeam.train.checkpointing`) store model, optimizer, scheduler, every rank's
RNG states (python, numpy, torch CPU and the rank's CUDA device), the sampler state and the per-source positions,
so a resumed run continues exactly where the saved one stopped; on CPU the losses and weights
are bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from threeam.errors import CheckpointError, InputError
from threeam.train import checkpointing
from threeam.train.config import TrainConfig, config_to_dict
from threeam.train.distributed import (DistContext, all_gather_object, barrier, pick_device, shard_index,
                                       unwrap_model, wrap_model)
from threeam.train.optim import (assign_parameters, build_optimizer, build_scheduler, clip_gradients,
                                 format_summary)

__all__ = ["StepFn", "SourceFactory", "MixtureSampler", "IndexedSource", "Trainer", "TrainingInterrupted",
           "seed_everything", "move_to_device"]

log = logging.getLogger("threeam.train")

StepFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
"""``step_fn(model, batch) -> {"loss": scalar tensor, ...}``."""
SourceFactory = Callable[[int, DistContext], Iterator[Any]]
"""``factory(position, ctx) -> iterator`` over this rank's batches from ``position`` on."""


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors inside dicts, lists and tuples moved to ``device`` (other objects unchanged)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


class MixtureSampler:
    """Seeded choice of the data source of each sample: ``P(name) = weight / sum(weights)``.

    The state (numpy PCG64 state and per-source counts) is JSON-able and part of checkpoints.
    """

    def __init__(self, weights: Mapping[str, float], seed: int = 0) -> None:
        if not weights:
            raise InputError("the data mixture needs at least one source")
        bad = {k: w for k, w in weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise InputError(f"mixing weights must be finite and >= 0, got {bad}")
        total = float(sum(weights.values()))
        if total <= 0:
            raise InputError("at least one data source needs a mixing weight > 0")
        self.names = list(weights)
        self.probs = np.asarray([weights[n] / total for n in self.names], dtype=np.float64)
        self._cum = np.cumsum(self.probs)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self.counts = {n: 0 for n in self.names}

    def next(self) -> str:
        u = self._rng.random()
        i = int(np.searchsorted(self._cum, u, side="right"))
        i = min(i, len(self.names) - 1)
        while self.probs[i] == 0:  # guard against u landing exactly on a zero-width bin edge
            i -= 1
        name = self.names[i]
        self.counts[name] += 1
        return name

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "counts": dict(self.counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["counts"]) != set(self.names):
            raise CheckpointError(f"sampler state covers sources {sorted(state['counts'])}, "
                                  f"this run has {sorted(self.names)}")
        self._rng.bit_generator.state = state["rng"]
        self.counts = {n: int(state["counts"][n]) for n in self.names}


class IndexedSource:
    """A resumable, rank-sharded :data:`SourceFactory` over an indexable dataset.

    Batch ``b`` of the global stream holds items ``perm_e[(b * batch_size + j) % length]``
    (``j < batch_size``), where ``e`` is the epoch of that item and ``perm_e`` a permutation
    seeded by ``(seed, e)`` (identity when ``shuffle=False``). Rank ``r`` of ``W`` reads global
    batches ``r, r + W, r + 2W, ...``; its ``position``-th batch is global batch
    ``position * W + r``. Batches are assembled with ``collate`` (default:
    ``torch.utils.data.default_collate``; ``batch_size=None`` yields single items uncollated).
    """

    def __init__(self, get_item: Callable[[int], Any], length: int, batch_size: int | None = None,
                 seed: int = 0, shuffle: bool = True, collate: Callable[[list[Any]], Any] | None = None) -> None:
        if length < 1:
            raise InputError(f"a data source needs at least one item, got length {length}")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.get_item = get_item
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.collate = collate or torch.utils.data.default_collate
        self._perm_cache: tuple[int, np.ndarray] | None = None

    def _item_index(self, k: int) -> int:
        epoch, i = divmod(k, self.length)
        if not self.shuffle:
            return i
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            perm = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(self.length)
            self._perm_cache = (epoch, perm)
        return int(self._perm_cache[1][i])

    def batch(self, global_batch: int) -> Any:
        """Global batch number ``global_batch``."""
        if self.batch_size is None:
            return self.get_item(self._item_index(global_batch))
        start = global_batch * self.batch_size
        return self.collate([self.get_item(self._item_index(start + j)) for j in range(self.batch_size)])

    def __call__(self, position: int, ctx: DistContext) -> Iterator[Any]:
        p = position
        while True:
            yield self.batch(shard_index(p, ctx))
            p += 1


class TrainingInterrupted(Exception):
    """Raised by :meth:`Trainer.fit` after SIGINT/SIGTERM: the step under way was finished and
    checkpointed (``checkpoint``), so ``--resume`` continues exactly from ``step``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at step {step}; checkpoint {checkpoint}")
        self.signum, self.step, self.checkpoint, self.signal_name = signum, step, checkpoint, name


class _StopRequest:
    """SIGINT/SIGTERM handlers for the training loop (main thread only): the first signal asks the
    loop to stop after the current optimizer step (which is then checkpointed); a second SIGINT
    raises KeyboardInterrupt at once. Previous handlers are restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing step, writing a checkpoint, then stopping "
                    "(press Ctrl-C again to abort without one)", signal.Signals(signum).name)

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved = {}


@dataclass
class _Progress:
    bar: Any = None

    def update(self, n: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """Runs optimizer steps, logs, checkpoints and resumes (see the module docstring).

    Args:
        model: the bare model (the trainer freezes it per ``config.optim``, moves it to the device
            and wraps it in DDP when distributed).
        step_fn: ``step_fn(model, batch) -> {"loss": ..., ...}``; called with the (possibly
            DDP-wrapped) model and the batch already moved to the device.
        sources: ``{name: SourceFactory}``; the names must equal ``config.data.sources`` names
            (the mixing weights come from there). With no sources configured, a single source
            gets weight 1.
        config: the run's TrainConfig.
        out_dir: folder for ``checkpoints/``, ``tb/`` (TensorBoard) and ``config.json``.
        ctx: distributed context (default: single process on ``config.run.device``).
    """

    def __init__(self, model: nn.Module, step_fn: StepFn, sources: Mapping[str, SourceFactory],
                 config: TrainConfig, out_dir: str | os.PathLike, ctx: DistContext | None = None,
                 evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None) -> None:
        self.config = config
        self.evaluate = evaluate
        self.out_dir = Path(out_dir)
        self.ctx = ctx or DistContext(device=pick_device(config.run.device))
        self.step_fn = step_fn
        self.sources = dict(sources)
        weights = self._mixing_weights(config, self.sources)
        self.sampler = MixtureSampler(weights, seed=config.seed)
        self.positions = {n: 0 for n in self.sources}
        self.step = 0
        self.history: list[dict[str, float]] = []

        self.assignment = assign_parameters(model, config.optim)
        self.bare_model = model
        self.optimizer = build_optimizer(model, config.optim, self.assignment)  # freezes first
        self.model = wrap_model(model, self.ctx, config.run.find_unused_parameters)
        self.scheduler = build_scheduler(self.optimizer, config.run.max_steps, config.optim)
        self.trainable = [p for items in self.assignment.trainable.values() for _, p in items]
        self._use_amp = self.ctx.device.type == "cuda" and config.run.amp == "bf16"
        self._resumed_from: int | None = None
        self._iters: dict[str, Iterator[Any]] = {}
        seed_everything(config.seed + self.ctx.rank)

    # ------------------------------------------------------------------ setup helpers

    @staticmethod
    def _mixing_weights(config: TrainConfig, sources: Mapping[str, SourceFactory]) -> dict[str, float]:
        if not sources:
            raise InputError("the trainer needs at least one data source")
        configured = {s.name: s.weight for s in config.data.sources}
        if not configured:
            if len(sources) != 1:
                raise InputError(f"{len(sources)} data sources given but data.sources configures no mixing "
                                 f"weights for {sorted(sources)}")
            return {next(iter(sources)): 1.0}
        if set(configured) != set(sources):
            raise InputError(f"data sources given {sorted(sources)} differ from data.sources in the config "
                             f"{sorted(configured)}")
        return {n: configured[n] for n in sources}

    def summary(self) -> str:
        """Table of trainable and frozen parameter counts per group."""
        return format_summary(self.assignment, self.config.optim)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _next_batch(self, name: str) -> Any:
        it = self._iters.get(name)
        if it is None:
            it = self._iters[name] = iter(self.sources[name](self.positions[name], self.ctx))
        try:
            batch = next(it)
        except StopIteration:
            raise InputError(f"data source {name!r} ran out of batches at position {self.positions[name]}; "
                             "source factories must yield indefinitely") from None
        self.positions[name] += 1
        return batch

    # ------------------------------------------------------------------ one step

    def train_step(self) -> dict[str, float]:
        """One optimizer step (``grad_accum_steps`` micro-batches); returns the logged values."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.config.run.grad_accum_steps
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        is_ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        for micro in range(accum):
            name = self.sampler.next()
            batch = move_to_device(self._next_batch(name), self.ctx.device)
            sync = self.model.no_sync() if is_ddp and micro < accum - 1 else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    out = self.step_fn(self.model, batch)
                if "loss" not in out:
                    raise InputError(f"step_fn must return a dict with 'loss'; got keys {sorted(out)}")
                loss = out["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step + 1} "
                                             f"(source {name!r}, position {self.positions[name] - 1})")
                if not loss.requires_grad:
                    raise InputError(f"the loss at step {self.step + 1} (source {name!r}, position "
                                     f"{self.positions[name] - 1}) depends on no trainable parameter: "
                                     "the batch trains nothing (e.g. a one-frame clip, or only GT-mask "
                                     "conditioning frames)")
                (loss.float() / accum).backward()
            for k, v in out.items():
                val = float(v.detach().float()) if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums.get(k, 0.0) + val
                counts[k] = counts.get(k, 0) + 1
            counts_key = f"samples/{name}"
            sums[counts_key] = sums.get(counts_key, 0.0) + 1.0
        grad_norm = clip_gradients(self.trainable, self.config.optim.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        record = {k: (v / counts[k] if k in counts else v) for k, v in sums.items()}
        record["grad_norm"] = float(grad_norm)
        for g in self.optimizer.param_groups:
            record[f"lr/{g['name']}"] = float(g["lr"])
        record["step"] = float(self.step)
        return record

    # ------------------------------------------------------------------ loop

    def fit(self, until: int | None = None) -> list[dict[str, float]]:
        """Train to ``until`` optimizer steps (default ``run.max_steps``), checkpointing every
        ``run.ckpt_every`` steps and at the stop; returns this call's per-step records.

        SIGINT/SIGTERM (in the main thread) stop the run after the step under way, which is then
        checkpointed like any other, and raise :class:`TrainingInterrupted`; ``resume`` continues
        from it bit-exactly. A second SIGINT aborts at once (KeyboardInterrupt, no checkpoint)."""
        run = self.config.run
        stop = run.max_steps if until is None else min(until, run.max_steps)
        writer = self._open_writer() if self.ctx.is_main else None
        progress = _Progress()
        if self.ctx.is_main and run.progress:
            from tqdm.auto import tqdm

            progress.bar = tqdm(total=stop, initial=self.step, desc=f"train {self.config.name}",
                                dynamic_ncols=True, leave=False)
        if self.ctx.is_main:
            if self.step == 0:
                log.info("parameters:\n%s", self.summary())
            self._write_config()  # the config of this (possibly resumed and re-overridden) run
        records: list[dict[str, float]] = []
        last_saved = self.step if self._resumed_from == self.step else None
        try:
            with _StopRequest() as stop_request:
                while self.step < stop:
                    rec = self.train_step()
                    records.append(rec)
                    self.history.append(rec)
                    progress.update(1, rec["loss"])
                    if self.step % run.log_every == 0 or self.step == 1 or self.step == stop:
                        self._log_scalars(writer, rec)
                    if self.evaluate is not None and run.eval_every and \
                            (self.step % run.eval_every == 0 or self.step == stop):
                        self._run_eval(writer)
                    if self.step % run.ckpt_every == 0 or self.step == stop:
                        self.save()
                        last_saved = self.step
                    signum = self._agreed_stop(stop_request.signum)
                    if signum is not None:
                        path = self.save() if last_saved != self.step else checkpointing.find_latest(self.out_dir)
                        raise TrainingInterrupted(signum, self.step, path)
                if last_saved != self.step:
                    self.save()
        finally:
            progress.close()
            if writer is not None:
                writer.close()
        return records

    def _run_eval(self, writer: Any) -> dict[str, float]:
        """The task's held-out evaluation (rank 0): TensorBoard ``eval/<metric>`` and a line of
        ``eval.jsonl`` (``{"step": ..., metrics}``, appended; a resumed run continues the file)."""
        if not self.ctx.is_main:
            barrier(self.ctx)
            return {}
        import json
        import time

        t0 = time.perf_counter()
        rng = checkpointing.capture_rng_state(self.ctx.device)  # evaluation must not shift the run's RNG streams
        try:
            metrics = {k: float(v) for k, v in self.evaluate(self.bare_model).items()}
        finally:
            checkpointing.restore_rng_state(rng)
        metrics["seconds"] = time.perf_counter() - t0
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(f"eval/{k}", v, self.step)
            writer.flush()
        line = json.dumps({"step": self.step, **{k: (v if math.isfinite(v) else None) for k, v in metrics.items()}})
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")
        log.info("eval at step %d: %s", self.step, line)
        barrier(self.ctx)
        return metrics

    def _agreed_stop(self, signum: int | None) -> int | None:
        """The stop request of any rank (every rank must stop at the same step to save together)."""
        if self.ctx.world_size <= 1:
            return signum
        flag = torch.tensor([0 if signum is None else int(signum)], device=self.ctx.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item()) or None

    def _open_writer(self) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        kwargs = {"purge_step": self.step + 1} if self.step > 0 else {}
        return SummaryWriter(log_dir=str(self.out_dir / "tb"), **kwargs)

    def _log_scalars(self, writer: Any, rec: Mapping[str, float]) -> None:
        recs = all_gather_object(dict(rec), self.ctx)  # collective: every rank calls it
        if writer is None:
            return
        keys = set().union(*recs)
        for k in sorted(keys):
            if k == "step":
                continue
            vals = [r[k] for r in recs if k in r]
            value = sum(vals) if k.startswith("samples/") else sum(vals) / len(vals)
            writer.add_scalar(k if "/" in k else f"train/{k}", value, self.step)
        writer.flush()

    def _write_config(self) -> None:
        import json

        from threeam.io.atomic import atomic_write_text

        atomic_write_text(self.out_dir / "config.json", json.dumps(config_to_dict(self.config), indent=2) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.config),
            "world_size": self.ctx.world_size,
            "rng": all_gather_object(checkpointing.capture_rng_state(self.ctx.device), self.ctx),
            "sampler": self.sampler.state_dict(),
            "positions": dict(self.positions),
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call this)."""
        state = self._state()  # collective (RNG states of every rank)
        path = None
        if self.ctx.is_main:
            path = checkpointing.save_checkpoint(self.out_dir, self.step, self.bare_model, self.optimizer,
                                                 self.scheduler, state, keep_last=self.config.run.keep_last)
            log.info("saved checkpoint %s", path)
        barrier(self.ctx)
        return path

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load checkpoint ``path`` (default: the latest under ``out_dir``) and return its step.

        Restores model, optimizer, scheduler, sampler, data positions and this rank's RNG
        states. Raises CheckpointError when there is none or it does not fit this run.
        """
        if path is None:
            path = checkpointing.find_latest(self.out_dir)
            if path is None:
                raise CheckpointError(f"no checkpoint to resume from under {checkpointing.checkpoint_dir(self.out_dir)}")
        state = checkpointing.load_checkpoint(path, self.bare_model, self.optimizer, self.scheduler,
                                              map_location=self.ctx.device)
        saved_task = state.get("config", {}).get("task")
        if saved_task is not None and saved_task != self.config.task:
            raise CheckpointError(f"checkpoint {path} was trained with task {saved_task!r}, this run uses "
                                  f"{self.config.task!r}")
        if set(state["positions"]) != set(self.positions):
            raise CheckpointError(f"checkpoint {path} has data sources {sorted(state['positions'])}, "
                                  f"this run has {sorted(self.positions)}")
        self.sampler.load_state_dict(state["sampler"])
        self.positions = {n: int(state["positions"][n]) for n in self.positions}
        self._iters = {}
        self.step = int(state["step"])
        rngs = state["rng"]
        if len(rngs) == self.ctx.world_size:
            checkpointing.restore_rng_state(rngs[self.ctx.rank])
        else:
            log.warning("checkpoint %s was written by %d ranks, this run has %d: RNG states re-seeded, "
                        "the run continues but not bit-exactly", path, len(rngs), self.ctx.world_size)
            seed_everything(self.config.seed + 1_000_003 * self.step + self.ctx.rank)
        self._resumed_from = self.step
        if self.ctx.is_main:
            log.info("resumed from %s (step %d)", path, self.step)
        return self.step
