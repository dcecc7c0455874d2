"""An ODE-Net and a ResNet on scikit-learn's digits: Table 1 of the Neural ODE paper, small.

Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, Table 1 compares on MNIST a ResNet with an ODE-Net
that replaces its residual blocks by one ODE block solved with an adaptive
method, its gradient computed by the adjoint: about the same test error with
fewer parameters, memory O(1) instead of O(L) (L layers), at the price of a
number of function evaluations that the solver chooses.  Here the same
comparison runs on the 8x8 digits that scikit-learn ships (1797 images, 10
classes, nothing downloaded), on the CPU in seconds:

    image 8x8 -> flatten (64) -> linear embed to width w
      -> ODE block   dh/dt = f(t, h), t in [0, 1], dopri5, adjoint gradients
         or k residual blocks  h <- h + g_i(h)  (no shared weights)
      -> linear classifier (10 classes)

``f`` is a small time-dependent MLP ``[h, t] -> hidden -> w``; each ``g_i``
the same MLP without ``t`` and with its hidden width chosen so that the
ResNet has about the ODE-Net's number of parameters.

Measured, for one training step on a batch after training:

- **memory**: the peak bytes of the tensors autograd keeps for the backward
  pass (``torch.autograd.graph.saved_tensors_hooks``: every tensor saved for
  backward is counted once per storage while it is alive; parameters, which
  exist anyway, are left out), so the number is meaningful on a CPU.  The
  adjoint saves only the block's input and output, whatever the number of
  steps: O(1) in the solver's steps; the ResNet keeps every block's
  activations: O(L).  A second table shows it: the ODE-Net at tighter
  tolerances (more steps, the same memory), the same weights differentiated by
  backpropagation through the solver (``adjoint=False``, the paper's RK-Net:
  memory grows with the steps), and the ResNet at twice the depth.
- **NFE**: the calls of the ODE function module ``f`` in the forward pass and
  in the backward pass (the adjoint integrates the state back together with
  the costate, calling ``f`` once per stage).  For the ResNet the calls of its
  blocks: L forward, none backward (backpropagation differentiates the stored
  graph).

Run ``python -m examples.neural_ode_digits`` (the full configuration: 30
epochs, about 30 s of training on one CPU thread) or ``--fast`` (6 epochs of
smaller models, about 5 s; what the tests run).  ``--threads N`` overrides the
one thread.  ``main(argv)`` returns the table's numbers as a dict.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
import weakref

import numpy as np
import torch
from torch import nn

from sciode.torch import odeint, odeint_adjoint


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and training settings."""

    width: int = 32          # hidden state h of the ODE / residual stream
    hidden: int = 64         # hidden layer of the ODE function f
    depth: int = 6           # residual blocks of the ResNet (the paper's 6)
    epochs: int = 30
    batch: int = 64
    lr: float = 1e-2
    rtol: float = 1e-3       # dopri5, forward and adjoint
    atol: float = 1e-4
    tight_rtol: float = 1e-5  # the memory check: more steps, the same memory?
    tight_atol: float = 1e-6
    test_fraction: float = 0.25
    seed: int = 0
    # torch.set_num_threads while training (None: leave as is).  The tensors are tiny: on a
    # 2-core machine one thread ran an ODE-Net epoch in 0.75 s, two threads in 10 s.
    threads: int | None = 1


FULL = Config()
FAST = Config(width=16, hidden=32, depth=4, epochs=6, batch=64, lr=2e-2)


# -- data -----------------------------------------------------------------------------------


def load_data(cfg: Config):
    """Digits as float32 ``(n, 1, 8, 8)`` in [0, 1] and int64 labels, split with a fixed seed
    (stratified: every class in the same proportion in both parts)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=cfg.test_fraction,
                                              random_state=cfg.seed, stratify=y)
    return tuple(torch.from_numpy(a) for a in (x_tr, y_tr, x_te, y_te))


# -- models ---------------------------------------------------------------------------------


class ODEFunc(nn.Module):
    """``f(t, h) = W2 tanh(W1 [h, t] + b1) + b2``, time-dependent.

    sciode passes ``t`` of shape ``(*batch, 1)`` (each sample steps on its
    own, the default) or a 0-d ``t`` (``batch_step="shared"``, or no batch);
    both broadcast to a ``(*batch, 1)`` column here.
    """

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.inp = nn.Linear(width + 1, hidden)
        self.out = nn.Linear(hidden, width)

    def forward(self, t, h):
        t = torch.as_tensor(t, dtype=h.dtype, device=h.device)
        tcol = torch.broadcast_to(t.reshape(-1) if t.ndim == 0 else t, (*h.shape[:-1], 1))
        return self.out(torch.tanh(self.inp(torch.cat([h, tcol], dim=-1))))


class ODEBlock(nn.Module):
    """``h(1)`` of ``dh/dt = f(t, h)``, ``h(0)`` the input, by dopri5."""

    def __init__(self, func: ODEFunc, rtol: float, atol: float, adjoint: bool = True):
        super().__init__()
        self.func, self.rtol, self.atol, self.adjoint = func, rtol, atol, adjoint

    def forward(self, h):
        t = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
        solve = odeint_adjoint if self.adjoint else odeint
        return solve(self.func, h, t, rtol=self.rtol, atol=self.atol, method="dopri5")[-1]


class ResBlock(nn.Module):
    """``h + W2 tanh(W1 h + b1) + b2``."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.inp = nn.Linear(width, hidden)
        self.out = nn.Linear(hidden, width)

    def forward(self, h):
        return h + self.out(torch.tanh(self.inp(h)))


class Classifier(nn.Module):
    """Downsampling, embedding, the middle (ODE block or residual blocks), classifier."""

    def __init__(self, middle: nn.Module, width: int, n_classes: int = 10):
        super().__init__()
        self.downsample = nn.Flatten()  # the 8x8 counts are the downsampled 32x32 bitmaps
        self.embed = nn.Linear(64, width)
        self.middle = middle
        self.classify = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.classify(self.middle(self.embed(self.downsample(x))))


def resnet_hidden(cfg: Config, depth: int) -> int:
    """The residual blocks' hidden width that brings ``depth`` of them nearest to the ODE
    function's parameter count ``(2w + 2) hidden + w``; a block has ``(2w + 1) r + w``."""
    w = cfg.width
    target = (2 * w + 2) * cfg.hidden + w
    return max(1, round((target / depth - w) / (2 * w + 1)))


def make_odenet(cfg: Config) -> Classifier:
    return Classifier(ODEBlock(ODEFunc(cfg.width, cfg.hidden), cfg.rtol, cfg.atol), cfg.width)


def make_resnet(cfg: Config, depth: int | None = None) -> Classifier:
    depth = cfg.depth if depth is None else depth
    r = resnet_hidden(cfg, cfg.depth)  # the same blocks at any depth (the memory check)
    return Classifier(nn.Sequential(*(ResBlock(cfg.width, r) for _ in range(depth))), cfg.width)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- measurements ---------------------------------------------------------------------------


class SavedTensorMeter:
    """Live and peak bytes of the tensors autograd saves for backward, inside ``track()``.

    Each saved tensor is counted once per storage while some packed reference
    to it is alive (a tensor saved by several operations counts once); the
    storages of ``exclude`` (the parameters) are not counted.
    """

    def __init__(self, exclude=()):
        self.skip = {p.untyped_storage().data_ptr() for p in exclude}
        self.refs: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, key: int, nbytes: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= nbytes

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.skip or key == 0:
            return _Packed(tensor)
        if key not in self.refs:
            self.refs[key] = 0
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        packed = _Packed(tensor)
        weakref.finalize(packed, self._release, key, storage.nbytes())
        return packed

    @contextlib.contextmanager
    def track(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda p: p.tensor):
            yield self


class _Packed:
    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor):
        self.tensor = tensor


class CallCounter:
    """Counts calls of the given modules (forward pre-hooks, so also the calls that the
    adjoint's backward pass makes)."""

    def __init__(self, modules):
        self.n = 0
        self.handles = [m.register_forward_pre_hook(self._hook) for m in modules]

    def _hook(self, module, args):
        self.n += 1

    def remove(self):
        for h in self.handles:
            h.remove()


def counted_modules(model: Classifier):
    """What a function evaluation is: the ODE function, or each residual block."""
    mid = model.middle
    return [mid.func] if isinstance(mid, ODEBlock) else list(mid)


def measure_step(model: Classifier, x, y) -> dict:
    """One forward + backward on ``(x, y)``: saved-tensor peak bytes and NFE per phase.
    The model's gradients are left zeroed."""
    meter = SavedTensorMeter(exclude=model.parameters())
    counter = CallCounter(counted_modules(model))
    try:
        model.zero_grad(set_to_none=True)
        with meter.track():
            loss = nn.functional.cross_entropy(model(x), y)
        nfe_f = counter.n
        loss.backward()
        nfe_b = counter.n - nfe_f
    finally:
        counter.remove()
        model.zero_grad(set_to_none=True)
    del loss
    return {"memory_bytes": meter.peak, "nfe_forward": nfe_f, "nfe_backward": nfe_b}


# -- training -------------------------------------------------------------------------------


def train(model: Classifier, data, cfg: Config, name: str, log) -> dict:
    """Adam with a cosine schedule; ``log`` (or None) gets a line per epoch."""
    x_tr, y_tr, x_te, y_te = data
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    counter = CallCounter(counted_modules(model))
    t0 = time.perf_counter()
    try:
        for epoch in range(cfg.epochs):
            model.train()
            perm = torch.randperm(len(x_tr), generator=gen)
            total, n_batches = 0.0, 0
            counter.n = 0
            for i in range(0, len(perm), cfg.batch):
                idx = perm[i:i + cfg.batch]
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
                loss.backward()
                opt.step()
                total += loss.item()
                n_batches += 1
            sched.step()
            nfe = counter.n / n_batches
            if log is not None:
                log(f"  {name:8s} epoch {epoch + 1:3d}/{cfg.epochs}  loss {total / n_batches:.4f}"
                    f"  test acc {accuracy(model, x_te, y_te):.4f}  NFE/batch (F+B) {nfe:.1f}"
                    f"  ({time.perf_counter() - t0:.1f} s)")
    finally:
        counter.remove()
    return {"train_seconds": time.perf_counter() - t0}


@torch.no_grad()
def accuracy(model: nn.Module, x, y) -> float:
    model.eval()
    return float((model(x).argmax(-1) == y).float().mean())


# -- the tables -----------------------------------------------------------------------------


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def format_table(rows: dict) -> str:
    head = (f"{'':10s} {'Test Error':>10s} {'# Params':>9s} {'Memory':>8s} {'(saved)':>11s} "
            f"{'NFE-F':>6s} {'NFE-B':>6s}")
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:10s} {100 * r['test_error']:9.2f}% {r['params']:9d} "
                     f"{r['memory']:>8s} {_kib(r['memory_bytes']):>11s} "
                     f"{r['nfe_forward']:6d} {r['nfe_backward']:6d}")
    return "\n".join(lines)


def format_scaling(s: dict) -> str:
    rows = []
    for key, what in (("odenet", "ODE-Net, adjoint"), ("rknet", "RK-Net (backprop through dopri5)")):
        rows += [(f"{what}, rtol {r['rtol']:.0e} atol {r['atol']:.0e}", r) for r in s[key]]
    rows += [(f"ResNet, {r['depth']} blocks", r) for r in s["resnet"]]
    w = max(len(name) for name, _ in rows)
    head = f"{'':{w}s} {'NFE-F':>6s} {'NFE-B':>6s} {'saved':>11s}"
    lines = [head, "-" * len(head)]
    lines += [f"{name:{w}s} {r['nfe_forward']:6d} {r['nfe_backward']:6d} "
              f"{_kib(r['memory_bytes']):>11s}" for name, r in rows]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fast", action="store_true",
                   help="the reduced configuration (seconds on one CPU thread)")
    p.add_argument("--epochs", type=int, help="override the configuration's epochs")
    p.add_argument("--seed", type=int, help="override the seed (default 0)")
    p.add_argument("--threads", type=int, help="torch threads while training (default 1)")
    p.add_argument("--quiet", action="store_true", help="print only the tables")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Train both models, print the tables, return their numbers.

    Returns ``{"config": Config, "odenet": row, "resnet": row, "scaling": {...}}``
    where a row has ``test_error``, ``test_accuracy``, ``params``,
    ``memory_bytes``, ``memory`` (``"O(1)"``/``"O(L)"``), ``nfe_forward``,
    ``nfe_backward`` and ``train_seconds``; ``scaling`` lists the memory
    measurements at tighter tolerances (``odenet``, ``rknet``) and at twice the
    depth (``resnet``).
    """
    args = parse_args(argv)
    cfg = FAST if args.fast else FULL
    label = "fast" if args.fast else "full"
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.threads is not None:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    log = None if args.quiet else print
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, label, log)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config, label: str, log) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    data = load_data(cfg)
    x_tr, y_tr, x_te, y_te = data
    if log is not None:
        log(f"digits: {len(x_tr)} train, {len(x_te)} test; {cfg}")

    # The measurement batch, in storage of its own (a saved slice of x_tr would count all of x_tr).
    x_m, y_m = x_tr[:cfg.batch].clone(), y_tr[:cfg.batch].clone()
    models, rows = {}, {}
    for name, make in (("ODE-Net", make_odenet), ("ResNet", make_resnet)):
        torch.manual_seed(cfg.seed)  # the same initial draws for the shared layers
        model = models[name] = make(cfg)
        info = train(model, data, cfg, name, log)
        acc = accuracy(model, x_te, y_te)
        rows[name] = {"test_accuracy": acc, "test_error": 1.0 - acc, "params": n_params(model),
                      "memory": "O(1)" if name == "ODE-Net" else "O(L)",
                      **measure_step(model, x_m, y_m), **info}

    # Memory against the number of steps / layers, on the trained ODE-Net's weights.
    odenet, block = models["ODE-Net"], models["ODE-Net"].middle
    scaling = {"odenet": [], "rknet": [], "resnet": []}
    for adjoint, key in ((True, "odenet"), (False, "rknet")):
        for rtol, atol in ((cfg.rtol, cfg.atol), (cfg.tight_rtol, cfg.tight_atol)):
            block.adjoint, block.rtol, block.atol = adjoint, rtol, atol
            scaling[key].append({"rtol": rtol, "atol": atol, **measure_step(odenet, x_m, y_m)})
    block.adjoint, block.rtol, block.atol = True, cfg.rtol, cfg.atol
    for depth in (cfg.depth, 2 * cfg.depth):
        torch.manual_seed(cfg.seed)
        scaling["resnet"].append({"depth": depth,
                                  **measure_step(make_resnet(cfg, depth), x_m, y_m)})

    print()
    print("Table 1 of Chen et al. (2018), on the 8x8 digits "
          f"({label} configuration; "
          f"memory: bytes saved for backward, batch {cfg.batch}):")
    print(format_table(rows))
    print()
    print("Memory against the number of solver steps / layers:")
    print(format_scaling(scaling))
    return {"config": cfg, "odenet": rows["ODE-Net"], "resnet": rows["ResNet"],
            "scaling": scaling}


if __name__ == "__main__":
    main()
