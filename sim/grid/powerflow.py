"""Fast time-series AC power flow on one site grid, and plain pandapower as its reference.

`PowerFlow(grid)` converts the prepared pandapower net (`sim.grid.model.SiteGrid`) once into
a lightsim2grid model and keeps it: each step writes only the loads' and static generators'
active and reactive power and solves by Newton-Raphson from the previous step's voltages
(warm start; the first step starts flat with the transformers' phase shifts, the 150 degrees
of SimBench's Dyn5 LV transformers, already in the angles). Per-call overhead is a few Python
calls, against the ~20-80 ms of rebuilding pandapower's internal case on every `runpp`.

Loadings follow pandapower's definitions so both agree: a line's is the larger end current
over `max_i_ka * df`, a transformer's the larger of `i * vn * sqrt(3)` on both sides over
`sn_mva / df` (pandapower's default `trafo_loading="current"`).

A step that does not converge is reported (`FlowResult.converged[t] = False`, NaN results)
and the next step starts flat again; nothing raises. `run_pandapower` solves the same
injections with `pandapower.runpp`, one call per step: the reference of the tests and the
benchmark.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np

from sim.grid.model import SiteGrid

__all__ = ["FlowResult", "PowerFlow", "run_pandapower"]

_SQRT3 = math.sqrt(3.0)
_PP_ORIG = "pandapower_v2"


@dataclass
class FlowResult:
    """Power-flow results over steps: arrays of shape (n_steps, n_elements); NaN where not converged."""

    converged: np.ndarray  # (T,) bool
    vm_pu: np.ndarray  # (T, n_bus)
    va_degree: np.ndarray  # (T, n_bus)
    line_loading_percent: np.ndarray  # (T, n_line)
    line_p_from_mw: np.ndarray  # (T, n_line)
    trafo_loading_percent: np.ndarray  # (T, n_trafo)
    trafo_p_hv_mw: np.ndarray  # (T, n_trafo)
    grid_p_mw: np.ndarray  # (T,) power drawn from the external grid (slack)
    losses_mw: np.ndarray  # (T,) slack power minus net injections

    @property
    def n_steps(self) -> int:
        return len(self.converged)

    @classmethod
    def empty(cls, n_steps: int, n_bus: int, n_line: int, n_trafo: int) -> FlowResult:
        """All steps not converged, every result NaN (to be filled step by step with `put`)."""
        return _empty_result(n_steps, n_bus, n_line, n_trafo)

    def window(self, steps: slice) -> FlowResult:
        """The results of `steps` only (views, not copies)."""
        return FlowResult(**{name: getattr(self, name)[steps] for name in self.__dataclass_fields__})

    def put(self, k: int, one: FlowResult) -> None:
        """Copy the first step of `one` into step k."""
        for name in self.__dataclass_fields__:
            getattr(self, name)[k] = getattr(one, name)[0]


def _empty_result(n_steps: int, n_bus: int, n_line: int, n_trafo: int) -> FlowResult:
    nan = np.nan
    return FlowResult(
        converged=np.zeros(n_steps, dtype=bool),
        vm_pu=np.full((n_steps, n_bus), nan),
        va_degree=np.full((n_steps, n_bus), nan),
        line_loading_percent=np.full((n_steps, n_line), nan),
        line_p_from_mw=np.full((n_steps, n_line), nan),
        trafo_loading_percent=np.full((n_steps, n_trafo), nan),
        trafo_p_hv_mw=np.full((n_steps, n_trafo), nan),
        grid_p_mw=np.full(n_steps, nan),
        losses_mw=np.full(n_steps, nan),
    )


def _as_2d(a: np.ndarray, width: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"{name} must have {width} columns (one per prosumer load), not shape {a.shape}")
    return a


def _flat_start(net) -> np.ndarray:
    """Slack voltage everywhere, angles shifted by every transformer on the way from the slack."""
    n_bus = len(net.bus)
    angle = np.full(n_bus, np.nan)
    vm = float(net.ext_grid.vm_pu.iloc[0])
    neighbours: list[list[tuple[int, float]]] = [[] for _ in range(n_bus)]
    for a, b in zip(net.line.from_bus.to_numpy(), net.line.to_bus.to_numpy(), strict=True):
        neighbours[int(a)].append((int(b), 0.0))
        neighbours[int(b)].append((int(a), 0.0))
    for hv, lv, shift in zip(
        net.trafo.hv_bus.to_numpy(), net.trafo.lv_bus.to_numpy(), net.trafo.shift_degree.to_numpy(), strict=True
    ):
        neighbours[int(hv)].append((int(lv), -float(shift)))
        neighbours[int(lv)].append((int(hv), float(shift)))
    queue: deque[int] = deque()
    for bus, va in zip(net.ext_grid.bus.to_numpy(), net.ext_grid.va_degree.to_numpy(), strict=True):
        angle[int(bus)] = float(va)
        queue.append(int(bus))
    while queue:
        a = queue.popleft()
        for b, shift in neighbours[a]:
            if np.isnan(angle[b]):
                angle[b] = angle[a] + shift
                queue.append(b)
    angle = np.nan_to_num(angle, nan=0.0)
    return (vm * np.exp(1j * np.deg2rad(angle))).astype(complex)


class PowerFlow:
    """lightsim2grid Newton-Raphson on a fixed site grid; only injections change between steps."""

    def __init__(self, grid: SiteGrid, *, tol_mva: float = 1e-8, max_iter: int = 20) -> None:
        from lightsim2grid.network import init_from_pandapower

        net = grid.net
        self.grid = grid
        self.tol_pu = tol_mva / float(net.sn_mva)
        self.max_iter = max_iter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes about columns lightsim2grid fills with defaults
            self._model = init_from_pandapower(net, pp_orig_file=_PP_ORIG)
        self._flat = _flat_start(net)
        self._v: np.ndarray | None = None  # last converged voltages (warm start)
        self.n_bus = len(net.bus)
        self.n_line = len(net.line)
        self.n_trafo = len(net.trafo)
        self._line_imax_ka = (net.line.max_i_ka.to_numpy(float) * net.line.df.to_numpy(float)).copy()
        self._line_on = net.line.in_service.to_numpy(bool)
        self._trafo_on = net.trafo.in_service.to_numpy(bool)
        self._trafo_sn = (net.trafo.sn_mva.to_numpy(float) * net.trafo.df.to_numpy(float)).copy()
        self._trafo_vn = np.vstack([net.trafo.vn_hv_kv.to_numpy(float), net.trafo.vn_lv_kv.to_numpy(float)])
        self._last = (None, None, None)

    def reset(self) -> None:
        """Forget the warm start: the next step starts flat."""
        self._v = None

    def _set(self, load_p: np.ndarray, load_q: np.ndarray, sgen_p: np.ndarray) -> None:
        """Write the injections that differ from the last ones into the model."""
        model = self._model
        last_p, last_q, last_s = self._last
        every = np.arange(len(load_p))
        for j in every if last_p is None else np.flatnonzero(load_p != last_p):
            model.change_p_load(int(j), float(load_p[j]))
        for j in every if last_q is None else np.flatnonzero(load_q != last_q):
            model.change_q_load(int(j), float(load_q[j]))
        for j in every if last_s is None else np.flatnonzero(sgen_p != last_s):
            model.change_p_sgen(int(j), float(sgen_p[j]))
        self._last = (load_p.copy(), load_q.copy(), sgen_p.copy())

    def run(
        self, load_p_mw: np.ndarray, load_q_mvar: np.ndarray, sgen_p_mw: np.ndarray, *, remember: bool = True
    ) -> FlowResult:
        """Solve one or more steps (rows) of injections, chained by warm start.

        With `remember=False` (forecasts), the warm start of the next actual step is kept as it was.
        """
        width = self.grid.n_loads
        load_p = _as_2d(load_p_mw, width, "load_p_mw")
        load_q = _as_2d(load_q_mvar, width, "load_q_mvar")
        sgen_p = _as_2d(sgen_p_mw, width, "sgen_p_mw")
        n = len(load_p)
        out = _empty_result(n, self.n_bus, self.n_line, self.n_trafo)
        v = self._v
        model = self._model
        for t in range(n):
            self._set(load_p[t], load_q[t], sgen_p[t])
            if not (
                np.all(np.isfinite(load_p[t])) and np.all(np.isfinite(load_q[t])) and np.all(np.isfinite(sgen_p[t]))
            ):
                v = None
                continue
            start = (v if v is not None else self._flat).copy()
            try:
                res = model.ac_pf(start, self.max_iter, self.tol_pu)
            except RuntimeError:
                res = np.zeros(0, dtype=complex)
            if len(res) == 0:
                v = None
                continue
            v = np.asarray(res, dtype=complex).copy()
            self._fill(out, t, v)
        if remember:
            self._v = v
        return out

    def _fill(self, out: FlowResult, t: int, v: np.ndarray) -> None:
        model = self._model
        out.converged[t] = True
        out.vm_pu[t] = np.abs(v)
        out.va_degree[t] = np.angle(v, deg=True)
        if self.n_line:
            p1, _, _, a1, _ = model.get_line_res1_full()
            _, _, _, a2, _ = model.get_line_res2_full()
            i_ka = np.maximum(np.abs(a1), np.abs(a2))
            out.line_loading_percent[t] = np.where(self._line_on, i_ka / self._line_imax_ka * 100.0, 0.0)
            out.line_p_from_mw[t] = np.where(self._line_on, p1, 0.0)
        if self.n_trafo:
            p1, _, _, a1, _ = model.get_trafo_res1_full()
            _, _, _, a2, _ = model.get_trafo_res2_full()
            load = np.maximum(np.abs(a1) * self._trafo_vn[0], np.abs(a2) * self._trafo_vn[1]) * _SQRT3 / self._trafo_sn
            out.trafo_loading_percent[t] = np.where(self._trafo_on, load * 100.0, 0.0)
            out.trafo_p_hv_mw[t] = np.where(self._trafo_on, p1, 0.0)
        p_grid = float(np.sum(model.get_gen_res_full()[0]))  # the slack generator(s) of the external grid
        out.grid_p_mw[t] = p_grid
        load_p, _, sgen_p = self._last
        out.losses_mw[t] = p_grid - float(np.sum(load_p)) + float(np.sum(sgen_p))


def run_pandapower(
    grid: SiteGrid, load_p_mw: np.ndarray, load_q_mvar: np.ndarray, sgen_p_mw: np.ndarray, *, tol_mva: float = 1e-8
) -> FlowResult:
    """Plain `pandapower.runpp`, once per step, on the same net and injections (the reference)."""
    import pandapower

    net = grid.net
    load_p = _as_2d(load_p_mw, grid.n_loads, "load_p_mw")
    load_q = _as_2d(load_q_mvar, grid.n_loads, "load_q_mvar")
    sgen_p = _as_2d(sgen_p_mw, grid.n_loads, "sgen_p_mw")
    out = _empty_result(len(load_p), len(net.bus), len(net.line), len(net.trafo))
    for t in range(len(load_p)):
        net.load["p_mw"] = load_p[t]
        net.load["q_mvar"] = load_q[t]
        net.sgen["p_mw"] = sgen_p[t]
        try:
            pandapower.runpp(net, tolerance_mva=tol_mva, numba=False, max_iteration=30)
        except pandapower.LoadflowNotConverged:
            continue
        out.converged[t] = True
        out.vm_pu[t] = net.res_bus.vm_pu.to_numpy()
        out.va_degree[t] = net.res_bus.va_degree.to_numpy()
        out.line_loading_percent[t] = net.res_line.loading_percent.to_numpy()
        out.line_p_from_mw[t] = net.res_line.p_from_mw.to_numpy()
        out.trafo_loading_percent[t] = net.res_trafo.loading_percent.to_numpy()
        out.trafo_p_hv_mw[t] = net.res_trafo.p_hv_mw.to_numpy()
        out.grid_p_mw[t] = float(net.res_ext_grid.p_mw.sum())
        out.losses_mw[t] = out.grid_p_mw[t] - float(load_p[t].sum()) + float(sgen_p[t].sum())
    return out
