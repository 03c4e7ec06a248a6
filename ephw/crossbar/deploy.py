"""Deploy any model on a simulated chip: every ``Conv2d`` / ``Linear`` weight read through a crossbar.

:func:`deploy` copies a feed-forward model (a distilled student, a BP-CNN, a ResNet-18) and
programs each of its weight layers onto its own :class:`~ephw.crossbar.CrossbarArray`
(conv kernels unrolled to ``C_out × C_in·k·k`` as in the ``crossbar`` backend; layer ``j``
draws from its own streams ``(chip_seed, j)`` and ``(read_seed, j)``). Biases, pooling,
activations and BatchNorm stay digital. A forward pass is one read of every array, so the
same presets and device models that settle an EP-CNN on a chip evaluate a student on one.

:func:`run_feedforward_sweep` is ``ephw sweep`` for such models: accuracy and deviation of
the on-chip states from the digital model's vs one crossbar parameter, over chips.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw.crossbar.array import CrossbarArray
from ephw.crossbar.params import CrossbarParams
from ephw.crossbar.presets import load_params
from ephw.errors import ConfigError
from ephw.stats import mean_ci

#: Short names of ``ephw sweep --param`` (as :data:`ephw.sweep.CROSSBAR_ALIASES`).
ALIASES = {
    "read_noise": "read_noise.proportional",
    "programming_noise": "programming_noise.rel",
    "drift_time": "drift.t_seconds",
    "levels": "conductance.levels_bits",
}
METRICS = ("accuracy", "agreement", "mean_abs_state_diff", "max_abs_state_diff")


def analog_layers(model: nn.Module) -> list[nn.Module]:
    """The weight layers that live on a chip: ``model.synapses`` if it has them, else every Conv2d/Linear."""
    synapses = getattr(model, "synapses", None)
    if isinstance(synapses, (list, tuple, nn.ModuleList)):
        return list(synapses)
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def unrolled_weight(layer: nn.Module) -> Tensor:
    """``(out, in)`` matrix an array stores: ``(C_out, C_in·k·k)`` for a conv, the weight for a dense layer."""
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


class AnalogLayer(nn.Module):
    """A ``Conv2d`` or ``Linear`` whose weight product is a read of a programmed array (bias digital).

    ``forward(x)``: ``(B, C_in, H, W) -> (B, C_out, H', W')`` or ``(..., in) -> (..., out)``.
    With ideal converters a conv read is evaluated as two convolutions (mean and, with
    per-read noise, variance) instead of im2col + matmul, exactly as in the ``crossbar`` backend.
    """

    def __init__(self, layer: nn.Module, params: CrossbarParams, index: int) -> None:
        super().__init__()
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise ConfigError(f"deploy: grouped convolutions (groups={layer.groups}) are not supported")
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise ConfigError(f"deploy: layer {index} is a {type(layer).__name__}, not a Conv2d or Linear")
        self.digital = layer
        self.array = CrossbarArray.program(unrolled_weight(layer), params, layer=index)
        self.calibrating = False

    def forward(self, x: Tensor) -> Tensor:
        layer, array = self.digital, self.array
        bias = None if layer.bias is None else layer.bias.detach()
        if isinstance(layer, nn.Linear):
            if self.calibrating and array.params.adc_forward.calibrated:
                array.calibrate(x.reshape(-1, x.shape[-1]))
            y = array.read(x)
            return y if bias is None else y + bias
        linear = None if self.calibrating else array.linear_read()
        conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
        if linear is not None:
            w_eff, v_eff = (None if t is None else t.view(layer.weight.shape).to(x.dtype) for t in linear)
            out = F.conv2d(x, w_eff, bias, **conv)
            if v_eff is not None:
                var = F.conv2d(x * x, v_eff, None, **conv).clamp_(min=0)
                noise = array.read_noise(out.shape).to(out.dtype)
                out = out + var.sqrt() * noise
            return out
        k = layer.kernel_size
        cols = F.unfold(x, k, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)  # (B, C k k, L)
        rows = cols.transpose(1, 2)
        if self.calibrating and array.params.adc_forward.calibrated:
            array.calibrate(rows.reshape(-1, rows.shape[-1]))
        out = array.read(rows)  # (B, L, C_out)
        h, w = (
            (x.shape[2 + i] + 2 * layer.padding[i] - layer.dilation[i] * (k[i] - 1) - 1) // layer.stride[i] + 1
            for i in range(2)
        )
        out = out.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return out if bias is None else out + bias.view(1, -1, 1, 1)


class ChipModel(nn.Module):
    """A copy of a feed-forward model whose weight layers are :class:`AnalogLayer` reads of one chip.

    Attributes:
        model: the copy (same ``forward``/``states`` as the original).
        layers: the analog layers, in :func:`analog_layers` order.
        params: the crossbar parameters.
    """

    def __init__(self, model: nn.Module, params: CrossbarParams) -> None:
        super().__init__()
        self.params = params
        self.model = copy.deepcopy(model).eval()
        targets = analog_layers(self.model)
        if not targets:
            raise ConfigError(f"deploy: {type(model).__name__} has no Conv2d/Linear layer to put on a chip")
        replace = {id(m): AnalogLayer(m, params, j) for j, m in enumerate(targets)}
        for parent in list(self.model.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in replace:
                    setattr(parent, name, replace[id(child)])
        self.layers = [replace[id(m)] for m in targets]

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    @torch.no_grad()
    def states(self, x: Tensor) -> list[Tensor]:
        """The model's ``states(x)`` (hidden states, then logits), or ``[logits]`` if it has none."""
        if hasattr(self.model, "states"):
            return self.model.states(x)
        return [self.model(x)]

    @torch.no_grad()
    def calibrate(self, x: Tensor) -> None:
        """Set every calibrated ADC's range from one forward pass of calibration images ``x`` ``(B, C, H, W)``.

        Each layer calibrates on the inputs it receives from the (already calibrated) layers before it.
        """
        for layer in self.layers:
            layer.calibrating = True
        try:
            self.model(x)
        finally:
            for layer in self.layers:
                layer.calibrating = False


def deploy(model: nn.Module, params: CrossbarParams | str = "pcm") -> ChipModel:
    """``model`` (feed-forward, weights unchanged) with every Conv2d/Linear on a chip of ``params`` (or a preset)."""
    if isinstance(params, str):
        params = load_params(params)
    return ChipModel(model, params)


def _states_of(model: nn.Module, x: Tensor) -> list[Tensor]:
    if hasattr(model, "states"):
        return model.states(x)
    return [model(x)]


@torch.no_grad()
def evaluate_on_chip(
    model: nn.Module,
    data: Any,
    params: CrossbarParams,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    reference: list[Tensor] | None = None,
    calibration: Tensor | None = None,
) -> dict[str, Any]:
    """Accuracy of ``model`` deployed on one chip of ``params`` over every image of ``data``.

    Args:
        model: the digital feed-forward model.
        data: an :class:`~ephw.data.ImageSet`.
        reference: the digital model's states per batch (from :func:`digital_states`); with it
            the report has ``agreement`` and the state deviations.
        calibration: images for :meth:`ChipModel.calibrate` (needed when an ADC has calibration).

    Returns:
        ``{"accuracy", "predictions" (n,), "agreement", "mean_abs_state_diff", "max_abs_state_diff"}``;
        the state deviations are over all hidden states and logits (``|s_chip − s_digital|``).
    """
    chip = deploy(model.to(device=device, dtype=dtype), params)
    if calibration is not None:
        chip.calibrate(calibration.to(device=device, dtype=dtype))
    preds, diffs_sum, diffs_n, diff_max, agree = [], 0.0, 0, 0.0, 0
    for b, lo in enumerate(range(0, len(data), batch_size)):
        x, _ = data.batch(slice(lo, lo + batch_size))
        states = chip.states(x.to(device=device, dtype=dtype))
        p = states[-1].argmax(1).cpu()
        preds.append(p)
        if reference is not None:
            ref = reference[b]
            agree += int((p == ref[-1].argmax(1)).sum())
            for s, r in zip(states, ref):
                d = (s.cpu() - r).abs()
                diffs_sum += float(d.sum())
                diffs_n += d.numel()
                diff_max = max(diff_max, float(d.max()))
    predictions = torch.cat(preds)
    out: dict[str, Any] = {
        "accuracy": float((predictions == data.labels).float().mean()),
        "predictions": predictions,
    }
    if reference is not None:
        out.update(
            agreement=agree / len(data), mean_abs_state_diff=diffs_sum / max(diffs_n, 1), max_abs_state_diff=diff_max
        )
    return out


@torch.no_grad()
def digital_states(
    model: nn.Module, data: Any, *, batch_size: int = 256, device: str | torch.device = "cpu", dtype=torch.float32
) -> list[list[Tensor]]:
    """The digital model's states (hidden states and logits, on CPU) per batch of ``data``."""
    model = model.to(device=device, dtype=dtype).eval()
    out = []
    for lo in range(0, len(data), batch_size):
        x, _ = data.batch(slice(lo, lo + batch_size))
        out.append([s.cpu() for s in _states_of(model, x.to(device=device, dtype=dtype))])
    return out


def sweep_params(options: dict[str, Any], param: str, value: Any, seed: int) -> CrossbarParams:
    """Crossbar parameters of one sweep point: options (preset/file/overrides), ``param=value``, chip ``seed``.

    The seeds are those ``ephw sweep`` gives the EP-CNN's chip (``chip_seed = seed``,
    ``read_seed = seed + 10000``), so both models are compared on the same chips.
    """
    param = ALIASES.get(param, param)
    overrides = [*options.get("overrides", []), f"{param}={value}", f"chip_seed={seed}", f"read_seed={seed + 10_000}"]
    return load_params(options.get("preset", "ideal"), options.get("file"), overrides)


def run_feedforward_sweep(
    model: nn.Module,
    data: Any,
    param: str,
    values: Sequence[Any],
    *,
    seeds: int = 1,
    batch_size: int = 256,
    options: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    calibration: Tensor | None = None,
) -> dict[str, Any]:
    """``ephw sweep`` for a feed-forward model: the report of :func:`ephw.sweep.run_sweep`, reference ``digital``.

    Every value × seed deploys the model on a new chip (seeds as :func:`sweep_params`).
    """
    options = options or {}
    reference = digital_states(model, data, batch_size=batch_size, device=device, dtype=dtype)
    ref_preds = torch.cat([r[-1].argmax(1) for r in reference])
    rows = []
    for value in values:
        per_seed: dict[str, list[float]] = {m: [] for m in METRICS}
        for seed in range(seeds):
            params = sweep_params(options, param, value, seed)
            res = evaluate_on_chip(
                model,
                data,
                params,
                batch_size=batch_size,
                device=device,
                dtype=dtype,
                reference=reference,
                calibration=calibration,
            )
            for m in METRICS:
                per_seed[m].append(float(res[m]))
        row: dict[str, Any] = {"value": value, "seeds": seeds}
        for metric, vals in per_seed.items():
            mean, half = mean_ci(vals)
            row[metric] = {"mean": mean, "ci95": None if math.isnan(half) else half, "values": vals}
        rows.append(row)
    return {
        "backend": "crossbar",
        "model": "feedforward",
        "param": param,
        "reference": "digital",
        "reference_accuracy": float((ref_preds == data.labels).float().mean()),
        "n": len(data),
        "rows": rows,
    }


def is_feedforward_checkpoint(path: str | None) -> bool:
    """Whether ``path`` (a checkpoint or shipped name; ``None`` = the bundled EP-CNN) is a feed-forward model."""
    if path is None:
        return False
    from ephw.checkpoint import checkpoint_format

    return checkpoint_format(path).startswith("ephw.feedforward")


def sweep_from_args(args: Any, backend: str, values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """``ephw sweep`` on a feed-forward ``--model`` (deployed on chips), or ``None`` for an EP checkpoint.

    Reads ``args.model, data, data_root, n, batch, device, dtype`` as the other sweep does;
    ``--steps``/``--tol`` do not apply (one forward pass is one read of every array).
    """
    if not is_feedforward_checkpoint(getattr(args, "model", None)):
        return None
    from ephw.data import load_dataset
    from ephw.errors import InputError
    from ephw.feedforward.checkpoint import load_feedforward

    if backend != "crossbar":
        raise InputError(f"a feed-forward --model is swept on the crossbar backend only, not {backend!r}")
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model, meta = load_feedforward(args.model, dtype, args.device)
    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    data = load_dataset(args.data or meta.get("data", "digits"), "test", args.data_root).subset(args.n)
    return run_feedforward_sweep(
        model,
        data,
        args.param,
        values,
        seeds=args.seeds,
        batch_size=args.batch,
        options=options,
        device=args.device,
        dtype=dtype,
    )
