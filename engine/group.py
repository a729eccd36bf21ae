"""The kernel `train` and `train_many` run: K models side by side, one mini-batch at a time.

The K models' weights live in one (D + 1, C * K) array, class c of model k in column c*K + k and
the bias in the last row. Per mini-batch:

    S  = Xb @ W[:D] + W[D]            # (n, C*K)  one GEMM for every model's scores
    P  = softmax per model            # in place in S
    G  = [Xb.T @ (P - Y) ; sum_rows]  # (D + 1, C*K)  one GEMM for every model's gradient
    W  = W * (1 - 2 lr_k(t) reg_k) - (lr_k(t) / n) * G   # per-column learning rate and reg

which is plain SGD on the loss of `engine.losses` (bias regularized too), with the learning rate
and reg as per-column vectors; lr_k(t) = lr_k * f_k(t) follows model k's schedule
(`engine.schedule`: constant, step or cosine). Every model of a call shares the seed: the same
initial weights and the same batch order, so `train_many(configs)[k]` is `train(configs[k])` up
to the rounding of a wider GEMM.

Why it is fast on a CPU:
- Batches are gathered from the training split's uint8 pixels (a quarter of float32's bytes)
  with `np.take(..., out=)` into reused buffers and decoded in cache by the same function that
  built X_train, so the numbers are identical. Indices are sorted inside each batch (the batch is
  the same set, only read in memory order).
- Every buffer is allocated once per group; the inner loop allocates only (n, K)-sized arrays.
- Skinny GEMMs (10 output columns) run far below the BLAS peak; K models make them K times
  wider. OpenBLAS's threads stay on: on 2 cores they halve even the 10-column GEMMs.
- A model that diverges or is stopped is compacted out of the stack, so it costs nothing after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .data.dataset import Dataset
from .losses import add_bias, softmax_loss_naive
from .schedule import Factors, Schedule

__all__ = ["VAL_CHUNK", "Batches", "Group", "Metrics", "OnEpochMany", "Status", "TrainResult"]

Status = Literal["completed", "diverged", "stopped"]
Metrics = dict[str, float]
# Return the indices (into configs) of the models to stop.
OnEpochMany = Callable[[int, Mapping[int, Metrics]], Iterable[int] | None]

VAL_CHUNK = 2048  # rows of the validation set scored at once


@dataclass(frozen=True)
class TrainResult:
    """One model's outcome. `weights` is (D + 1, C) with the bias last, or None if it diverged."""

    learning_rate: float
    reg: float
    batch_size: int
    epochs: int
    status: Status
    weights: np.ndarray | None = field(repr=False)
    history: tuple[Metrics, ...]
    end_epoch: int  # the last epoch run (where it diverged or was stopped, or `epochs`)
    reason: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per phase, whole group
    group_size: int = 1

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy after the last completed epoch (NaN if none completed)."""
        return self.history[-1]["val_accuracy"] if self.history else math.nan

    @property
    def best_val_accuracy(self) -> float:
        return max((h["val_accuracy"] for h in self.history), default=math.nan)


class Batches:
    """Gathers shuffled mini-batches into one reused (B, D) buffer."""

    def __init__(self, data: Dataset, batch_size: int, dtype: np.dtype) -> None:
        self.x = np.empty((batch_size, data.n_features), dtype=dtype)
        self.decoder = data.decoder if data.decoder and data.decoder.dtype == dtype else None
        self.source: np.ndarray
        if self.decoder is not None and data.pixels_train is not None:
            self.source = data.pixels_train
            self.raw = np.empty((batch_size, data.n_features), dtype=np.uint8)
        else:  # a Dataset built from float arrays: gather the floats themselves
            self.source = data.X_train.astype(dtype, copy=False)

    def fill(self, idx: np.ndarray) -> np.ndarray:
        n = idx.shape[0]
        if self.decoder is not None:
            np.take(self.source, idx, axis=0, out=self.raw[:n])
            return self.decoder.decode(self.raw[:n], out=self.x[:n])
        return np.take(self.source, idx, axis=0, out=self.x[:n])


class Group:
    """K models trained side by side; compacts itself as models diverge or are stopped."""

    def __init__(
        self,
        data: Dataset,
        configs: list[tuple[float, float]],
        schedules: list[Schedule],
        batch_sizes: list[int],
        epochs: int,
        seed: int,
        dtype: np.dtype,
        on_epoch: OnEpochMany | None,
    ) -> None:
        self.data, self.configs, self.schedules, self.dtype = data, configs, schedules, dtype
        self.batch_sizes, self.epochs, self.seed = batch_sizes, epochs, seed
        self.on_epoch = on_epoch
        # Mixed batch sizes (each a multiple of the smallest) step through shared chunks of the
        # smallest size; a model updates at its own batch boundaries (`_step_mixed`). Chunks
        # grow at an epoch's start once the smallest batches are gone (`_grow_chunk`).
        self.chunk = min(batch_sizes)
        self.mixed = len(set(batch_sizes)) > 1
        self.n_train = data.X_train.shape[0]
        self.updates_per_epoch = -(-self.n_train // self.chunk)
        self.t = 0  # updates done: the schedules' clock (one batch size)
        self.D, self.C = data.n_features, data.n_classes
        self.X_val = data.X_val.astype(dtype, copy=False)  # once, not every epoch
        self.histories: list[list[Metrics]] = [[] for _ in configs]
        self.outcomes: dict[int, tuple[Status, np.ndarray | None, int, str]] = {}
        self.timings = {"data": 0.0, "forward": 0.0, "backward": 0.0, "eval": 0.0}

    # -- state that depends on which models are still active --------------------------------
    # Columns are class-major: column c*K + k is class c of model k. Reductions over the C
    # classes then run as C elementwise ops on contiguous (n, K) slices, instead of NumPy's
    # slow reductions over a 10-long last axis (4-10x slower at K = 25, measured).
    def _set_active(self, active: list[int], W: np.ndarray) -> None:
        K, C = len(active), self.C
        self.active, self.W = active, W
        lrs = np.array([self.configs[k][0] for k in active])
        regs = np.array([self.configs[k][1] for k in active])
        updates: int | np.ndarray = self.updates_per_epoch
        if self.mixed:
            sizes = np.array([self.batch_sizes[k] for k in active])
            updates = -(-self.n_train // sizes)  # (K,): each model's own clock
            self._chunk_tables(sizes)
        self.factors = Factors([self.schedules[k] for k in active], updates, self.epochs)
        self.lrs, self.regs = lrs, regs
        self.lr_cols = np.tile(lrs, C)  # float64; scaled by 1/n into `step` per batch
        with np.errstate(over="ignore"):  # a decay beyond float32 is divergence, caught later
            self.decay = np.tile(1.0 - 2.0 * lrs * regs, C).astype(self.dtype)  # (C*K,)
        B, D = self.chunk, self.D
        self.S = np.empty((B, C * K), dtype=self.dtype)
        self.G = np.empty((D + 1, C * K), dtype=self.dtype)
        self.step = np.empty(C * K, dtype=self.dtype)
        self.row_max = np.empty((B, K), dtype=self.dtype)
        self.row_sum = np.empty((B, K), dtype=self.dtype)
        # Flat positions of each row's true-class score in S: row*C*K + y*K + k.
        self.row_offset = (np.arange(B) * (C * K))[:, None]
        self.model_offset = np.arange(K)[None, :]

    def _chunk_tables(self, sizes: np.ndarray) -> None:
        """For chunk j of an epoch and active model k: the index of the batch it belongs to
        (the model's clock within the epoch), that batch's rows (the last one may be short) and
        whether the batch ends with this chunk; and the partial gradients summed so far."""
        starts = np.arange(0, self.n_train, self.chunk)[:, None]  # (J, 1)
        ends = np.minimum(starts + self.chunk, self.n_train)
        self.batch_index = starts // sizes  # (J, K)
        self.batch_rows = np.minimum(sizes, self.n_train - self.batch_index * sizes)
        self.batch_ends = (ends % sizes == 0) | (ends == self.n_train)
        K, C = sizes.shape[0], self.C
        self.G_sum = np.zeros((self.D + 1, C * K), dtype=self.dtype)
        # 0/1 per column, scratch for `_step_mixed`: the columns whose batch ends, then the rest
        self.ends = np.empty(C * K, dtype=self.dtype)
        self.pending = False  # whether G_sum holds part of a batch

    def _grow_chunk(self) -> bool:
        """At an epoch's start: once the models with the smallest batches are gone (stopped by
        a pruner, or diverged), the rest step through the largest chunks that divide all their
        batch sizes, not the group's first (a quarter of the calls when batch 64 leaves 256s
        behind). The batches are the same rows (one permutation per epoch); every batch ends
        with the epoch, so no partial gradient is pending. Whether anything changed."""
        chunk = math.gcd(*(self.batch_sizes[k] for k in self.active))
        if chunk == self.chunk:
            return False
        self.chunk = chunk
        self.updates_per_epoch = -(-self.n_train // self.chunk)
        self._set_active(self.active, self.W)
        return True

    def _weights(self, pos: int) -> np.ndarray:
        """Model at stack position `pos` as a (D + 1, C) array."""
        K = len(self.active)
        return self.W.reshape(self.D + 1, self.C, K)[:, :, pos].copy()

    def _retire(self, positions: list[int], status: Status, epoch: int, reasons: list[str]) -> None:
        """Record the outcome of the models at `positions` and compact them out of the stack."""
        for pos, reason in zip(positions, reasons, strict=True):
            k = self.active[pos]
            weights = None if status == "diverged" else self._weights(pos)
            self.outcomes[k] = (status, weights, epoch, reason)
        dropped = set(positions)
        keep = [p for p in range(len(self.active)) if p not in dropped]
        K, D1, C = len(self.active), self.D + 1, self.C
        W = np.ascontiguousarray(self.W.reshape(D1, C, K)[:, :, keep]).reshape(D1, C * len(keep))
        partial = None
        if self.mixed:  # the models kept keep their batches' partial gradients
            partial = self.G_sum.reshape(D1, C, K)[:, :, keep].reshape(D1, C * len(keep))
            pending = self.pending
        self._set_active([self.active[p] for p in keep], W)
        if partial is not None:
            self.G_sum[:] = partial
            self.pending = pending

    def _non_finite(self) -> np.ndarray:
        """Stack positions of the models with any NaN or infinite weight."""
        K = len(self.active)
        finite = np.isfinite(self.W.reshape(self.D + 1, self.C, K)).all(axis=(0, 1))
        return np.flatnonzero(~finite)

    def _reg_loss(self) -> np.ndarray:
        """reg_k * sum(W_k ** 2) for every active model, (K,)."""
        K = len(self.active)
        W3 = self.W.reshape(self.D + 1, self.C, K)
        return self.regs * np.einsum("dck,dck->k", W3, W3, dtype=np.float64)

    # -- one mini-batch ----------------------------------------------------------------------
    def _forward(self, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every active model's scores on the rows, turned into P - Y in `self.S[:n]`; returns
        the data loss and hit count, (K,) each."""
        n, D, C, K = xb.shape[0], self.D, self.C, len(self.active)
        W, S = self.W, self.S[:n]
        np.dot(xb, W[:D], out=S)  # (n, C*K)
        S += W[D]
        S3 = S.reshape(n, C, K)
        row_max, row_sum = self.row_max[:n], self.row_sum[:n]
        np.maximum(S3[:, 0], S3[:, 1], out=row_max)
        for c in range(2, C):
            np.maximum(row_max, S3[:, c], out=row_max)
        S3 -= row_max[:, None, :]
        flat = self.row_offset[:n] + yb[:, None] * K + self.model_offset  # (n, K)
        S_flat = S.reshape(-1)
        true_scores = S_flat[flat]  # (n, K), shifted: 0 exactly where the true class is the max
        hits = np.count_nonzero(true_scores == 0, axis=0)
        np.exp(S, out=S)
        np.add(S3[:, 0], S3[:, 1], out=row_sum)
        for c in range(2, C):
            np.add(row_sum, S3[:, c], out=row_sum)
        data_loss = (np.log(row_sum) - true_scores).mean(axis=0, dtype=np.float64)  # (K,)
        S3 /= row_sum[:, None, :]
        S_flat[flat] -= 1  # P - Y; positions are distinct
        return data_loss, hits

    def _step_vectorized(self, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One SGD step for every active model; returns the data loss and hit count, (K,) each."""
        n, D, C, K = xb.shape[0], self.D, self.C, len(self.active)
        W, S, G = self.W, self.S[:n], self.G
        t0 = time.perf_counter()
        data_loss, hits = self._forward(xb, yb)
        t1 = time.perf_counter()
        # Scale P - Y by lr_k(t) / n before the GEMM: S is (n, C*K), a third the size of G.
        if self.factors.constant:
            np.multiply(self.lr_cols, 1.0 / n, out=self.step, casting="same_kind")
        else:
            lr_now = self.lrs * self.factors.at(self.t)  # (K,)
            self.step.reshape(C, K)[:] = lr_now / n
            self.decay.reshape(C, K)[:] = 1.0 - 2.0 * lr_now * self.regs
        S *= self.step
        np.dot(xb.T, S, out=G[:D])  # (D, C*K): lr_k / n * Xb.T @ (P - Y)
        np.sum(S, axis=0, out=G[D])
        W *= self.decay
        W -= G
        t2 = time.perf_counter()
        self.timings["forward"] += t1 - t0
        self.timings["backward"] += t2 - t1
        return data_loss, hits

    def _step_mixed(
        self, xb: np.ndarray, yb: np.ndarray, j: int, epoch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Chunk j of the epoch for models of different batch sizes: every model's forward pass
        and its gradient on the chunk, scaled by lr_k(t_k) / (its batch's rows) and summed
        into G_sum; the models whose batch ends with this chunk take their step, with their
        own clock t_k. Each model's SGD is the one it would do alone, up to summation order."""
        n, D, C, K = xb.shape[0], self.D, self.C, len(self.active)
        W, S, G = self.W, self.S[:n], self.G
        t0 = time.perf_counter()
        data_loss, hits = self._forward(xb, yb)
        t1 = time.perf_counter()
        t = (epoch - 1) * self.factors.U + self.batch_index[j]  # (K,) each model's update
        lr_now = self.lrs * self.factors.at(t)
        self.step.reshape(C, K)[:] = lr_now / self.batch_rows[j]
        S *= self.step
        ending = self.batch_ends[j]
        decay = (1.0 - 2.0 * lr_now * self.regs).astype(self.dtype)  # (K,)
        plain = ending.all() and not self.pending  # every batch is this chunk: a plain step
        out = G if plain or self.pending else self.G_sum
        np.dot(xb.T, S, out=out[:D])
        np.sum(S, axis=0, out=out[D])
        if plain:
            self.decay.reshape(C, K)[:] = decay
            W *= self.decay
            W -= G
        else:
            if self.pending:
                self.G_sum += G
            if ending.all():
                self.decay.reshape(C, K)[:] = decay
                W *= self.decay
                W -= self.G_sum
                self.G_sum[...] = 0
            elif ending.any():
                # The models whose batch ends take their step; the others' columns are scaled by
                # 1 and get 0 subtracted. Whole-stack passes: selecting the ending models'
                # class-major columns (model k is [:, :, k] of the (D + 1, C, K) view) cost 2-4x
                # as much at 16 models, measured. (A model whose partial gradient overflowed gets
                # NaN weights now rather than at its batch's end: diverged either way.)
                ends = self.ends.reshape(C, K)
                ends[:] = ending
                self.decay.reshape(C, K)[:] = np.where(ending, decay, 1)
                W *= self.decay
                np.multiply(self.G_sum, self.ends, out=G)
                W -= G
                ends[:] = ~ending
                self.G_sum *= self.ends
            self.pending = not ending.all()
        self.timings["forward"] += t1 - t0
        self.timings["backward"] += time.perf_counter() - t1
        return data_loss, hits

    def _step_naive(self, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lr, reg = self.configs[self.active[0]]
        lr *= float(self.factors.at(self.t)[0])
        t0 = time.perf_counter()
        X1 = add_bias(xb)
        hits = np.count_nonzero(np.argmax(X1 @ self.W, axis=1) == yb)
        loss, dW = softmax_loss_naive(self.W, X1, yb, reg)
        t1 = time.perf_counter()
        data_loss = loss - reg * float(np.sum(self.W.astype(np.float64) ** 2))
        self.W -= (lr * dW).astype(self.dtype)
        self.timings["forward"] += t1 - t0
        self.timings["backward"] += time.perf_counter() - t1
        return np.array([data_loss]), np.array([hits])

    def _val_accuracy(self) -> np.ndarray:
        X, y, D, C, K = self.X_val, self.data.y_val, self.D, self.C, len(self.active)
        hits = np.zeros(K, dtype=np.int64)
        for start in range(0, X.shape[0], VAL_CHUNK):
            scores = X[start : start + VAL_CHUNK] @ self.W[:D] + self.W[D]
            pred = scores.reshape(scores.shape[0], C, K).argmax(axis=1)
            hits += np.count_nonzero(pred == y[start : start + VAL_CHUNK, None], axis=0)
        return hits / X.shape[0]

    # -- the epochs ----------------------------------------------------------------------------
    def run(self, naive: bool = False) -> list[TrainResult]:
        rng = np.random.default_rng(self.seed)
        D, C, K = self.D, self.C, len(self.configs)
        W0 = (0.001 * rng.standard_normal((D + 1, C))).astype(self.dtype)
        self._set_active(list(range(K)), np.repeat(W0, K, axis=1))
        batches = Batches(self.data, self.chunk, self.dtype)
        y_train = self.data.y_train
        n_train = y_train.shape[0]
        step = self._step_naive if naive else self._step_vectorized
        started = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(1, self.epochs + 1):
                if not self.active:
                    break
                if self.mixed and self._grow_chunk():
                    batches = Batches(self.data, self.chunk, self.dtype)
                epoch_start, n_start = time.perf_counter(), len(self.active)
                loss_sum = np.zeros(n_start)
                hit_sum = np.zeros(n_start, dtype=np.int64)
                order = rng.permutation(n_train)
                for j, start in enumerate(range(0, n_train, self.chunk)):
                    t0 = time.perf_counter()
                    idx = np.sort(order[start : start + self.chunk])
                    xb, yb = batches.fill(idx), y_train[idx]
                    self.timings["data"] += time.perf_counter() - t0
                    if self.mixed:
                        losses, hits = self._step_mixed(xb, yb, j, epoch)
                    else:
                        losses, hits = step(xb, yb)
                    self.t += 1
                    loss_sum += losses * idx.shape[0]
                    hit_sum += hits
                    bad = np.flatnonzero(~np.isfinite(losses))
                    if bad.size:
                        reasons = [f"diverged at epoch {epoch}: loss={losses[p]}" for p in bad]
                        self._retire(list(bad), "diverged", epoch, reasons)
                        alive = np.setdiff1d(np.arange(loss_sum.size), bad)
                        loss_sum, hit_sum = loss_sum[alive], hit_sum[alive]
                        if not self.active:
                            break
                if not self.active:
                    break
                # The last update of an epoch can overflow after its loss was computed: a model
                # with non-finite weights diverged here, before any metric or weight is kept.
                bad = self._non_finite()
                if bad.size:
                    reasons = [
                        f"diverged at epoch {epoch}: non-finite weights after the epoch's last "
                        "update"
                        for _ in bad
                    ]
                    self._retire(list(bad), "diverged", epoch, reasons)
                    alive = np.setdiff1d(np.arange(loss_sum.size), bad)
                    loss_sum, hit_sum = loss_sum[alive], hit_sum[alive]
                    if not self.active:
                        break
                t0 = time.perf_counter()
                val_acc = self._val_accuracy()
                reg_loss = self._reg_loss()
                self.timings["eval"] += time.perf_counter() - t0
                share = (time.perf_counter() - epoch_start) / n_start
                metrics = {}
                for pos, k in enumerate(self.active):
                    metrics[k] = {
                        "train_loss": float(loss_sum[pos] / n_train + reg_loss[pos]),
                        "train_accuracy": float(hit_sum[pos] / n_train),
                        "val_accuracy": float(val_acc[pos]),
                        "epoch_time_s": share,
                        "l2_term": float(reg_loss[pos]),  # train_loss's L2 part, at the end
                    }
                    self.histories[k].append(metrics[k])
                if self.on_epoch is not None:
                    asked = set(self.on_epoch(epoch, metrics) or ())
                    stop = [p for p, k in enumerate(self.active) if k in asked]
                    if stop:
                        reasons = [f"stopped at epoch {epoch}"] * len(stop)
                        self._retire(stop, "stopped", epoch, reasons)
            if self.active:
                everyone = list(range(len(self.active)))
                self._retire(everyone, "completed", self.epochs, [""] * len(everyone))
        self.timings["total"] = time.perf_counter() - started
        results = []
        for k, (lr, reg) in enumerate(self.configs):
            status, weights, end_epoch, reason = self.outcomes[k]
            results.append(
                TrainResult(
                    learning_rate=lr,
                    reg=reg,
                    batch_size=self.batch_sizes[k],
                    epochs=self.epochs,
                    status=status,
                    weights=weights,
                    history=tuple(self.histories[k]),
                    end_epoch=end_epoch,
                    reason=reason,
                    timings=dict(self.timings),
                    group_size=K,
                )
            )
        return results
