"""A programmed crossbar chip holding one weight matrix, read forward and transposed.

Pipeline (every step is skipped exactly when its parameters switch it off):

programming (once per :meth:`CrossbarArray.program` / :meth:`~CrossbarArray.reprogram`)
    tiles -> mapping ``G± = g_min + s·max(±w, 0)`` -> level quantisation ->
    device variability -> programming noise -> stuck faults -> drift exponents ν.
read (every call)
    DAC per tile input vector -> per-tile currents through the conductances drifted to
    ``t`` and attenuated by the first-order IR drop -> output-referred read noise ->
    ADC per tile output vector -> divide by the mapping scale -> sum over tiles.

Read noise is modelled **output-referred**: a conductance noise ``δG`` independent per
device and read, with variance ``Var(G)``, gives a tile current noise that is exactly
Gaussian with variance ``Σ_i x_i²·(Var(G⁺_ij) + Var(G⁻_ij))``, independent across
outputs and reads; it is drawn per tile output before the ADC (one extra matmul with
``x²`` instead of a noisy copy of the conductances per read).
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import torch
from torch import Tensor

from ephw.crossbar import pcm, rram, seeds, tiling
from ephw.crossbar.converters import convert, convert_, quantize
from ephw.crossbar.irdrop import pair_attenuation
from ephw.crossbar.params import Converter, CrossbarParams
from ephw.errors import InputError

#: Codes of :meth:`CrossbarArray.stuck_map`.
NOT_STUCK, STUCK_GMIN, STUCK_GMAX = 0, 1, 2


@dataclass
class _ReadState:
    """Conductance-derived tensors of one read time (cached: they change only with ``t``)."""

    t: float
    dg: Tensor  # (n_tr, n_tc, R, C) (G⁺ − G⁻)/(g_max − g_min) with IR drop: ADC units per unit input
    var: Tensor | None  # (n_tr, n_tc, R, C) (Var(G⁺) + Var(G⁻))/(g_max − g_min)², same units squared
    w_eff: Tensor  # (out, in) weights represented
    v_eff: Tensor | None  # (out, in) output-referred noise variance per unit input², weight units²

    @functools.cached_property
    def forward_layout(self) -> tuple[Tensor, Tensor | None]:
        """``dg``, ``var`` as ``(n_tr, R, n_tc·C)``: one matrix per row block for ``bmm``."""
        return _rows_first(self.dg), None if self.var is None else _rows_first(self.var)

    @functools.cached_property
    def transposed_layout(self) -> tuple[Tensor, Tensor | None]:
        """``dg``, ``var`` as ``(n_tr·n_tc, C, R)``: one transposed matrix per tile for ``bmm``."""
        return _tiles_transposed(self.dg), None if self.var is None else _tiles_transposed(self.var)


def _rows_first(t: Tensor) -> Tensor:
    n_tr, n_tc, R, C = t.shape
    return t.permute(0, 2, 1, 3).reshape(n_tr, R, n_tc * C)


def _tiles_transposed(t: Tensor) -> Tensor:
    n_tr, n_tc, R, C = t.shape
    return t.transpose(-1, -2).reshape(n_tr * n_tc, C, R)


class CrossbarArray:
    """A weight matrix ``W`` ``(out, in)`` programmed onto crossbar tiles.

    Build with :meth:`program`. ``read(x)`` ≈ ``x @ W.T`` and ``read_transposed(v)`` ≈
    ``v @ W`` read the same programmed conductances. The chip's tensors live on ``W``'s
    device in ``W``'s dtype; inputs are cast to that dtype and outputs back to theirs.
    A conv kernel is read as its unrolled ``(C_out, C_in·k·k)`` matrix (the caller unrolls).
    """

    def __init__(self, params: CrossbarParams, device: torch.device, dtype: torch.dtype, layer: int = 0) -> None:
        """Internal: an unprogrammed chip; use :meth:`program`."""
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
            raise InputError(f"layer must be a non-negative int, got {layer!r}")
        self.params = params
        self.device = torch.device(device)
        self.dtype = dtype
        self.layer = layer
        self.program_count = 0
        self._external: torch.Generator | None = None
        self._read_gen = seeds.generator(seeds.derive_seed(params.read_seed, layer, seeds.READ), self.device)
        self._state: _ReadState | None = None
        self._frozen: tuple[_ReadState, _ReadState] | None = None  # (noise-free state, its frozen draw)
        self._ar: Tensor | None = None  # standardised AR(1) read-noise state per cell, (n_tr, n_tc, R, C)
        self._calibrated: dict[str, Tensor] = {}  # ADC full scales from calibrate(), per direction

    # ------------------------------------------------------------------ programming

    @classmethod
    def program(
        cls,
        W: Tensor,
        params: CrossbarParams | None = None,
        generator: torch.Generator | None = None,
        *,
        layer: int = 0,
    ) -> CrossbarArray:
        """Program ``W`` ``(out, in)`` (weight units) onto a new chip.

        Args:
            W: the weights; the chip follows its device and dtype (floating point).
            params: crossbar parameters (default: ideal).
            generator: if given, the programming draws are seeded from it (and from it again
                on :meth:`reprogram`) instead of ``params.chip_seed``.
            layer: index of this array among the arrays of one network: arrays with different
                ``layer`` get independent programming and read-noise streams from the same
                ``chip_seed`` / ``read_seed`` (default 0).
        """
        W = _check_weights(W)
        chip = cls(params or CrossbarParams(), W.device, W.dtype, layer)
        chip._external = generator
        chip._program(W)
        return chip

    def reprogram(self, W: Tensor) -> CrossbarArray:
        """Program new weights onto this chip (hardware-in-the-loop training); returns ``self``.

        The programming draws continue the chip's streams (a fresh draw, reproducible
        from ``chip_seed``); the read stream continues too.
        """
        W = _check_weights(W).to(device=self.device, dtype=self.dtype)
        self.program_count += 1
        self._program(W)
        return self

    @torch.no_grad()
    def _program(self, W: Tensor) -> None:
        p = self.params
        cr, mp = p.conductance, p.mapping
        R, C = mp.tile_rows, mp.tile_cols
        self.out_features, self.in_features = W.shape
        self.tile_grid = tiling.grid(self.out_features, self.in_features, R, C)
        gens = self._programming_generators()

        w = tiling.to_tiles(W, R, C)  # (n_tr, n_tc, R, C)
        valid = tiling.to_tiles(torch.ones_like(W, dtype=torch.bool), R, C)
        m = w.abs().amax(dim=-2)  # (n_tr, n_tc, C): per-column full-scale weight
        if mp.scale == "tile":
            m = m.amax(dim=-1, keepdim=True).expand_as(m).clone()
        m = torch.where(m > 0, m, torch.ones_like(m))  # an all-zero column maps to g_min whatever s is
        scale = (cr.span / m).unsqueeze(-2)  # (n_tr, n_tc, 1, C), µS per weight unit
        g = cr.g_min + scale * torch.stack((w.clamp(min=0), (-w).clamp(min=0)))  # (2, n_tr, n_tc, R, C)
        g = g.clamp(cr.g_min, cr.g_max)  # rounding of s·max|w| may overshoot g_max by an ulp
        if cr.levels_bits is not None:
            step = cr.span / (2**cr.levels_bits - 1)
            g = cr.g_min + torch.round((g - cr.g_min) / step).clamp(max=2**cr.levels_bits - 1) * step
        target = g

        if p.variability.enabled:
            rel = _randn(g.shape, gens[seeds.VARIABILITY], g)
            g_max_dev = (cr.g_max * (1.0 + p.variability.g_max_rel_std * rel)).clamp(min=cr.g_min)
            g = cr.g_min + (g - cr.g_min) * ((g_max_dev - cr.g_min) / cr.span)
        g_aimed = g  # what the device is programmed towards; sets its drift statistics

        noise = p.programming_noise
        if noise.enabled:
            if noise.kind == "gaussian":
                sigma = noise.rel * g.abs() + noise.abs_uS
            elif noise.kind == "rram_wan2022":
                sigma = rram.programming_sigma(g, cr.g_max)
            else:
                sigma = pcm.programming_sigma(g, cr.g_max)
            g = (g + sigma * _randn(g.shape, gens[seeds.PROGRAMMING], g)).clamp(min=0.0)

        stuck = torch.zeros(g.shape, dtype=torch.int8, device=g.device)
        if p.stuck_faults.enabled:
            u = torch.rand(g.shape, generator=gens[seeds.STUCK], device=g.device, dtype=g.dtype)
            at_min = u < p.stuck_faults.p_gmin
            at_max = ~at_min & (u < p.stuck_faults.p_gmin + p.stuck_faults.p_gmax)
            g = g.masked_fill(at_min, cr.g_min).masked_fill(at_max, cr.g_max)
            stuck = at_min.to(torch.int8) * STUCK_GMIN + at_max.to(torch.int8) * STUCK_GMAX

        nu = relax = None
        if p.drift.enabled and p.drift.model == "pcm":
            nu = pcm.draw_drift_nu(g_aimed, cr.g_max, gens[seeds.DRIFT])
            nu = nu.masked_fill(stuck != NOT_STUCK, 0.0)  # a stuck device does not drift
            nu = nu * valid
        elif p.drift.enabled:
            # RRAM relaxation: one persistent standard-normal draw per device, scaled by σ_relax(t)
            relax = _randn(g.shape, gens[seeds.DRIFT], g).masked_fill(stuck != NOT_STUCK, 0.0) * valid

        # Padding cells are unused: open circuits that carry no current and no noise.
        self._valid = valid
        self._m = m
        self._target = target * valid
        self._g = g * valid
        self._stuck = stuck * valid
        self._nu = nu
        self._relax = relax
        self._aimed = g_aimed * valid
        self._state = None
        self._frozen = None
        self._ar = None

    def _programming_generators(self) -> dict[int, torch.Generator]:
        if self._external is not None:
            ext = self._external
            draws = torch.randint(0, 2**62, (len(seeds.PROGRAMMING_STREAMS),), generator=ext, device=ext.device)
            keys = [int(d) for d in draws.tolist()]
        else:
            keys = [
                seeds.derive_seed(self.params.chip_seed, self.layer, self.program_count, s)
                for s in seeds.PROGRAMMING_STREAMS
            ]
        return {s: seeds.generator(k, self.device) for s, k in zip(seeds.PROGRAMMING_STREAMS, keys)}

    # ------------------------------------------------------------------ state at a read time

    def _time(self, t: float | None) -> float:
        t = self.params.drift.t_seconds if t is None else float(t)
        if not t > 0:
            raise InputError(f"read time must be > 0 s, got {t}")
        return t

    def _drifts_at(self, t: float) -> bool:
        """Whether the conductances at ``t`` differ from the programmed ones."""
        if self._relax is not None:
            return t > 1.0  # the fitted relaxation starts after the 1 s programming read
        return self._nu is not None and t > self.params.drift.t0_seconds

    def _drifted(self, t: float) -> Tensor:
        if not self._drifts_at(t):
            return self._g
        if self._relax is not None:
            sigma = rram.relaxation_sigma(self._aimed, self.params.conductance.g_max, t)
            return (self._g + sigma * self._relax).clamp(min=0.0)
        return self._g * (t / self.params.drift.t0_seconds) ** (-self._nu)

    @torch.no_grad()
    def _read_state(self, t: float | None) -> _ReadState:
        t = self._time(t)
        if self._state is not None and self._state.t == t:
            return self._state
        p = self.params
        g = self._drifted(t)
        dg, var = self._through_wires(g, self._noise_variance(g, t))
        if p.drift.compensation and self._drifts_at(t):
            dg0, _ = self._through_wires(self._g, None)
            drifted = dg.abs().sum(dim=(-2, -1), keepdim=True)
            alpha = torch.where(drifted > 0, dg0.abs().sum(dim=(-2, -1), keepdim=True) / drifted, 1.0)
            dg = dg * alpha
            var = None if var is None else var * alpha**2

        span = p.conductance.span
        dg = dg / span
        var = None if var is None else var / span**2
        m = self._m.unsqueeze(-2)  # weight units per ADC unit, (n_tr, n_tc, 1, C)
        w_eff = tiling.from_tiles(dg * m, self.out_features, self.in_features)
        v_eff = None if var is None else tiling.from_tiles(var * m**2, self.out_features, self.in_features)
        self._state = _ReadState(t=t, dg=dg, var=var, w_eff=w_eff, v_eff=v_eff)
        return self._state

    def _noise_variance(self, g: Tensor, t: float) -> Tensor | None:
        """Per-device read-noise variance (µS²) of conductances ``g`` ``(2, n_tr, n_tc, R, C)`` at time ``t``."""
        rn = self.params.read_noise
        if not rn.enabled:
            return None
        var = torch.zeros_like(g)
        if rn.additive_uS > 0:
            var = var + rn.additive_uS**2 * self._valid
        if rn.proportional > 0:
            var = var + (rn.proportional * g) ** 2
        if rn.pcm_1f:
            sigma = pcm.one_over_f_sigma(self._g, self.params.conductance.g_max, t, rn.t_read_s)
            var = var + (sigma * g) ** 2
        return var

    def _through_wires(self, g: Tensor, var: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``(G⁺ − G⁻, Var(G⁺) + Var(G⁻))`` per cell ``(n_tr, n_tc, R, C)``, attenuated by the IR drop."""
        ir = self.params.ir_drop
        if ir.enabled:
            att = pair_attenuation(g, ir.wire_resistance_ohm)
            g = g * att
            if var is not None:
                var = var * att**2  # the noise current crosses the same wires
        return g[0] - g[1], None if var is None else var[0] + var[1]

    # ------------------------------------------------------------------ reads

    def read(self, x: Tensor, *, t: float | None = None) -> Tensor:
        """Forward read ``x @ Wᵀ`` through the chip.

        Args:
            x: inputs ``(..., in)`` (states; any float dtype, on the chip's device).
            t: read time since programming in s (default ``params.drift.t_seconds``).

        Returns:
            ``(..., out)`` in weight × input units, dtype of ``x``; read noise is redrawn.
            With an ideal ADC the read is one matmul with the effective weights and is
            differentiable in ``x``; with a per-tile ADC it is computed without autograd.
        """
        x, out_dtype = self._check_input(x, self.in_features, "x")
        st = self._state_for_read(t)
        dac, adc = self.params.dac_forward, self.params.adc_forward
        R = self.params.mapping.tile_rows
        if adc.ideal:
            # Without an ADC per tile the tile sums are linear: one matmul with the effective weights.
            xq = x if dac.ideal else _quantize_blocks(x, dac, R)
            y = xq @ st.w_eff.T
            if st.v_eff is not None:
                y = y + torch.sqrt((xq * xq) @ st.v_eff.T) * self._randn(y.shape)
            return y.to(out_dtype)

        return self._read_tiles(x, st).to(out_dtype)

    def read_transposed(self, v: Tensor, *, t: float | None = None) -> Tensor:
        """Transposed read ``v @ W`` through the same programmed conductances.

        The inputs drive the bit lines and the word lines are sensed (transposed
        converters, fresh read noise). In ``"column"`` scale mode each column's input is
        pre-multiplied digitally by ``max|w|_column / max|w|_tile`` before its DAC so that
        the columns' different mapping scales add up correctly.

        Args:
            v: inputs ``(..., out)``.
            t: read time since programming in s (default ``params.drift.t_seconds``).

        Returns:
            ``(..., in)``, dtype of ``v``; differentiable in ``v`` under the same
            conditions as :meth:`read` (and, in ``"column"`` mode, an ideal DAC).
        """
        v, out_dtype = self._check_input(v, self.out_features, "v")
        st = self._state_for_read(t)
        p = self.params
        dac, adc = p.dac_transposed, p.adc_transposed
        C = p.mapping.tile_cols
        if adc.ideal and (dac.ideal or p.mapping.scale == "tile"):
            vq = v if dac.ideal else _quantize_blocks(v, dac, C)
            y = vq @ st.w_eff
            if st.v_eff is not None:
                y = y + torch.sqrt((vq * vq) @ st.v_eff) * self._randn(y.shape)
            return y.to(out_dtype)

        return self._read_tiles_transposed(v, st).to(out_dtype)

    def linear_read(self, transposed: bool = False, t: float | None = None) -> tuple[Tensor, Tensor | None] | None:
        """``(W_eff, V_eff)`` ``(out, in)`` when reads in that direction are linear, else ``None``.

        With ideal DAC and ADC a read is exactly ``x @ W_effᵀ + sqrt(x² @ V_effᵀ) ξ``
        (transposed: ``v @ W_eff + sqrt(v² @ V_eff) ξ``) with ``ξ`` from :meth:`read_noise`,
        so a caller may evaluate it with any equivalent linear operator (e.g. a convolution
        instead of im2col + matmul). ``V_eff`` is ``None`` without read noise, and with
        ``frozen`` or ``correlated`` read noise, whose draw is then already in ``W_eff``: the
        call counts as one read (a correlated process advances by one).
        """
        p = self.params
        dac, adc = (p.dac_transposed, p.adc_transposed) if transposed else (p.dac_forward, p.adc_forward)
        if not (dac.ideal and adc.ideal):
            return None
        st = self._state_for_read(t)
        return st.w_eff, st.v_eff

    @torch.no_grad()
    def _state_for_read(self, t: float | None) -> _ReadState:
        """The state one read sees: with ``frozen``/``correlated`` read noise its draw is in the weights.

        ``per_read`` returns the noise-free state (the noise is drawn output-referred per read).
        ``frozen``: one standard-normal draw per cell, seeded by ``(read_seed, layer, programming
        index, t)``, so every read at ``t`` is the same and another ``t`` gives another draw.
        ``correlated``: the AR(1) state advances by one per call.
        """
        st = self._read_state(t)
        rn = self.params.read_noise
        if st.var is None or rn.time_structure == "per_read":
            return st
        if rn.time_structure == "frozen":
            if self._frozen is None or self._frozen[0] is not st:
                t_bits = struct.unpack("<q", struct.pack("<d", st.t))[0] & (2**63 - 1)
                key = seeds.derive_seed(self.params.read_seed, self.layer, seeds.READ, self.program_count, t_bits)
                z = _randn(st.dg.shape, seeds.generator(key, self.device), st.dg)
                self._frozen = (st, self._with_draw(st, z))
            return self._frozen[1]
        xi = torch.randn(st.dg.shape, generator=self._read_gen, device=self.device, dtype=self.dtype)
        if self._ar is None:
            self._ar = xi  # stationary start: z_0 ~ N(0, 1)
        else:
            rho = rn.rho
            self._ar = self._ar.mul_(rho).add_(xi, alpha=math.sqrt(1.0 - rho * rho))
        return self._with_draw(st, self._ar)

    def _with_draw(self, st: _ReadState, z: Tensor) -> _ReadState:
        """``st`` with the read noise ``sqrt(var)·z`` (``z`` per cell, standard normal) in its conductances.

        The pair difference of two independent device noises is Gaussian with the pair's summed
        variance, so one draw per cell has exactly the distribution of one per device.
        """
        dg = st.dg + st.var.sqrt() * z
        m = self._m.unsqueeze(-2)
        w_eff = tiling.from_tiles(dg * m, self.out_features, self.in_features)
        return _ReadState(t=st.t, dg=dg, var=None, w_eff=w_eff, v_eff=None)

    def read_noise(self, shape: torch.Size | tuple[int, ...]) -> Tensor:
        """Standard-normal draws ``ξ`` from this array's read stream (for :meth:`linear_read`)."""
        return self._randn(torch.Size(shape))

    @torch.no_grad()
    def calibrate(self, x: Tensor, *, transposed: bool = False, t: float | None = None) -> Tensor:
        """Set the range of the direction's ADCs with ``calibration`` from calibration inputs.

        The inputs go through the DAC and the chip at ``t`` without read noise; every ADC's full
        scale becomes the ``calibration_quantile`` of ``|ADC input|`` over the inputs (and, per
        ``"tile"``, over the tile's output lines; per ``"column"``, per line). A line that never
        carries current gets full scale 1. The calibration stays until the next ``calibrate``
        (also across :meth:`reprogram`, as a chip calibrated once).

        Args:
            x: calibration inputs ``(..., in)`` (``(..., out)`` when ``transposed``).
            transposed: calibrate the transposed read's ADCs instead of the forward ones.
            t: read time (default ``params.drift.t_seconds``).

        Returns:
            The full scales in ADC units: ``(n_tr, n_tc, 1 or C)`` forward, ``(n_tr, n_tc, 1 or R)``
            transposed.
        """
        p = self.params
        adc = p.adc_transposed if transposed else p.adc_forward
        if not adc.calibrated:
            name = "adc_transposed" if transposed else "adc_forward"
            raise InputError(f"{name}.calibration is none: set it to tile or column to calibrate")
        size = self.out_features if transposed else self.in_features
        x, _ = self._check_input(x, size, "x")
        st = self._read_state(t)
        n_tr, n_tc = self.tile_grid
        if transposed:
            u = self._read_tiles_transposed(x, st, currents=True)  # (n_tr, n_tc, n, R)
        else:
            u = self._read_tiles(x, st, currents=True).permute(0, 2, 1, 3)  # (n_tr, n_tc, n, C)
        u = u.abs() if adc.signed else u.clamp(min=0)
        per = u if adc.calibration == "column" else u.flatten(-2).unsqueeze(-1)
        if adc.calibration_quantile >= 1.0:
            scale = per.amax(dim=-2)
        else:
            scale = torch.quantile(per.transpose(-1, -2).float(), adc.calibration_quantile, dim=-1).to(per.dtype)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # (n_tr, n_tc, 1 or lines)
        self._calibrated["transposed" if transposed else "forward"] = scale
        return scale.clone()

    def _adc_noise(self, u: Tensor, adc: Converter) -> None:
        """Add the ADC-input noise of ``adc`` to the currents ``u`` in place (read stream)."""
        if adc.noise > 0:
            u.add_(self._randn(u.shape), alpha=adc.noise)

    @torch.no_grad()
    def _read_tiles(self, x: Tensor, st: _ReadState, currents: bool = False) -> Tensor:
        """Forward read tile by tile (a converter on every tile), ``(..., in)`` -> ``(..., out)``.

        ``currents``: return the noise-free ADC inputs ``(n_tr, n, n_tc, C)`` instead (calibration).
        """
        p = self.params
        R, C = p.mapping.tile_rows, p.mapping.tile_cols
        n_tr, n_tc = self.tile_grid
        lead = x.shape[:-1]
        n = math.prod(lead)
        xb = tiling.pad_last(x.reshape(n, self.in_features), n_tr * R).view(n, n_tr, R)
        code, dac_scale = convert(xb, p.dac_forward)  # dac_scale: (n, n_tr, 1), a float or None
        g, var = st.forward_layout
        code = code.transpose(0, 1)  # (n_tr, n, R)
        u = torch.bmm(code, g)  # (n_tr, n, n_tc·C): tile currents in ADC units
        if currents:
            return u.view(n_tr, n, n_tc, C)
        if var is not None:
            u.add_(torch.bmm(code * code, var).sqrt_().mul_(self._randn(u.shape)))
        self._adc_noise(u, p.adc_forward)
        cal = self._calibration("forward", p.adc_forward)
        cal = None if cal is None else cal.unsqueeze(1)  # (n_tr, 1, n_tc, 1 or C)
        levels, adc_scale = convert_(u.view(n_tr, n, n_tc, C), p.adc_forward, calibrated=cal)
        y = levels.mul_(self._m.unsqueeze(1))  # per tile (and column) weight full scale
        if isinstance(dac_scale, Tensor):
            dac_scale = dac_scale.transpose(0, 1).unsqueeze(-1)  # (n_tr, n, 1, 1)
        for factor in (adc_scale, dac_scale):
            if factor is not None:
                y = y.mul_(factor)
        y = y.sum(dim=0).view(n, n_tc * C)[:, : self.out_features]
        return y.reshape(*lead, self.out_features)

    def _calibration(self, direction: str, adc: Converter) -> Tensor | None:
        if not adc.calibrated:
            return None
        if direction not in self._calibrated:
            raise InputError(f"adc_{direction} has calibration on: call calibrate(x) on the array before reading")
        return self._calibrated[direction]

    @torch.no_grad()
    def _read_tiles_transposed(self, v: Tensor, st: _ReadState, currents: bool = False) -> Tensor:
        """Transposed read tile by tile, ``(..., out)`` -> ``(..., in)``.

        ``currents``: return the noise-free ADC inputs ``(n_tr, n_tc, n, R)`` instead (calibration).
        """
        p = self.params
        R, C = p.mapping.tile_rows, p.mapping.tile_cols
        n_tr, n_tc = self.tile_grid
        lead = v.shape[:-1]
        n = math.prod(lead)
        vb = tiling.pad_last(v.reshape(n, self.out_features), n_tc * C).view(n, 1, n_tc, C)
        tile_m = self._m.amax(dim=-1, keepdim=True)  # (n_tr, n_tc, 1)
        if p.mapping.scale == "column":
            vs = vb * (self._m / tile_m)  # (n, n_tr, n_tc, C)
        else:
            vs = vb.expand(n, n_tr, n_tc, C)
        code, dac_scale = convert(vs, p.dac_transposed)  # dac_scale: (n, n_tr, n_tc, 1), a float or None
        g, var = st.transposed_layout
        code = code.permute(1, 2, 0, 3).reshape(n_tr * n_tc, n, C)
        u = torch.bmm(code, g)  # (n_tr·n_tc, n, R)
        if currents:
            return u.view(n_tr, n_tc, n, R)
        if var is not None:
            u.add_(torch.bmm(code * code, var).sqrt_().mul_(self._randn(u.shape)))
        self._adc_noise(u, p.adc_transposed)
        cal = self._calibration("transposed", p.adc_transposed)
        cal = None if cal is None else cal.unsqueeze(2)  # (n_tr, n_tc, 1, 1 or R)
        levels, adc_scale = convert_(u.view(n_tr, n_tc, n, R), p.adc_transposed, calibrated=cal)
        y = levels.mul_(tile_m.unsqueeze(-1))
        if isinstance(dac_scale, Tensor):
            dac_scale = dac_scale.permute(1, 2, 0, 3)  # (n_tr, n_tc, n, 1)
        for factor in (adc_scale, dac_scale):
            if factor is not None:
                y = y.mul_(factor)
        y = y.sum(dim=1).transpose(0, 1).reshape(n, n_tr * R)[:, : self.in_features]
        return y.reshape(*lead, self.in_features)

    def _randn(self, shape: torch.Size) -> Tensor:
        return torch.randn(shape, generator=self._read_gen, device=self.device, dtype=self.dtype)

    def _check_input(self, x: Tensor, size: int, name: str) -> tuple[Tensor, torch.dtype]:
        if not isinstance(x, Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != size:
            raise InputError(f"{name} must have shape (..., {size}), got {tuple(x.shape)}")
        if x.device != self.device:
            raise InputError(f"{name} is on {x.device} but the crossbar is on {self.device}")
        return x.to(self.dtype), x.dtype if x.is_floating_point() else self.dtype

    # ------------------------------------------------------------------ diagnostics

    def effective_weights(self, t: float | None = None) -> Tensor:
        """The weights ``(out, in)`` the chip represents at time ``t`` without read noise or converters.

        Includes mapping, levels, variability, programming noise, stuck faults, drift and
        the first-order IR drop (``read`` with ideal converters and no read noise is
        ``x @ effective_weights().T``).
        """
        return self._read_state(t).w_eff.clone()

    @torch.no_grad()
    def sampled_weights(self, t: float | None = None) -> Tensor:
        """The weights ``(out, in)`` one read at ``t`` sees: :meth:`effective_weights` plus one read-noise draw.

        With ``frozen`` noise it is the draw of ``t`` (every read at ``t`` sees it); with
        ``correlated`` noise the process advances by one read; with ``per_read`` noise one
        fresh per-device draw (a read itself draws it output-referred). Converters are not
        included. Used by noise-aware training to draw weights from a device model.
        """
        st = self._state_for_read(t)
        if st.v_eff is None:
            return st.w_eff.clone()
        return st.w_eff + st.v_eff.sqrt() * self._randn(st.w_eff.shape)

    def conductances(self, t: float | None = None) -> tuple[Tensor, Tensor]:
        """``(G⁺, G⁻)``, each ``(out, in)`` in µS: programmed and drifted to ``t``, no IR drop, no read noise."""
        g = self._drifted(self._time(t))
        return self._untile(g[0]), self._untile(g[1])

    def target_conductances(self) -> tuple[Tensor, Tensor]:
        """``(G⁺, G⁻)`` in µS the mapping aimed at (after level quantisation, before any device error)."""
        return self._untile(self._target[0]), self._untile(self._target[1])

    def mapping_scale(self) -> Tensor:
        """``s`` ``(out, in)`` in µS per weight unit: ``w = (G⁺ − G⁻)/s`` for an ideal device."""
        s = (self.params.conductance.span / self._m).unsqueeze(-2).expand_as(self._g[0])
        return self._untile(s)

    def drift_exponents(self) -> tuple[Tensor, Tensor] | None:
        """Per-device drift exponents ``(ν⁺, ν⁻)``, each ``(out, in)``, or ``None`` without drift."""
        if self._nu is None:
            return None
        return self._untile(self._nu[0]), self._untile(self._nu[1])

    def stuck_map(self) -> tuple[Tensor, Tensor]:
        """Stuck-fault codes ``(out, in)`` int8 of ``(G⁺, G⁻)``: 0 working, 1 stuck at g_min, 2 at g_max."""
        return self._untile(self._stuck[0]), self._untile(self._stuck[1])

    def _untile(self, t: Tensor) -> Tensor:
        return tiling.from_tiles(t, self.out_features, self.in_features).clone()

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` of the programmed matrix."""
        return self.out_features, self.in_features

    @property
    def n_devices(self) -> int:
        """Programmed devices: two (``G⁺``, ``G⁻``) per weight; padding cells not counted."""
        return 2 * self.out_features * self.in_features

    @property
    def n_tiles(self) -> int:
        """Number of ``tile_rows × tile_cols`` tiles."""
        return self.tile_grid[0] * self.tile_grid[1]

    def __repr__(self) -> str:
        return (
            f"CrossbarArray(shape={self.shape}, tiles={self.tile_grid[0]}x{self.tile_grid[1]}, "
            f"{self.params.describe()}, {self.dtype}, {self.device})"
        )


def _check_weights(W: Tensor) -> Tensor:
    if not isinstance(W, Tensor):
        raise InputError(f"W must be a torch.Tensor, got {type(W).__name__}")
    if W.dim() != 2 or min(W.shape) < 1:
        raise InputError(f"W must be a non-empty (out, in) matrix, got shape {tuple(W.shape)}")
    if not W.is_floating_point():
        raise InputError(f"W must be floating point, got {W.dtype}")
    if not torch.isfinite(W).all():
        raise InputError("W has non-finite values")
    return W.detach()


def _randn(shape: torch.Size, gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)


def _quantize_blocks(x: Tensor, conv: Converter, block: int) -> Tensor:
    """``x`` ``(..., n)`` through ``conv``, one (dynamic) range per block of ``block`` entries (a tile's lines)."""
    n = x.shape[-1]
    n_blocks = -(-n // block)
    xb = tiling.pad_last(x, n_blocks * block).unflatten(-1, (n_blocks, block))
    return quantize(xb, conv).flatten(-2)[..., :n]
