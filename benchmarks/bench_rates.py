"""Achieved GFLOP/s and the fraction of the BLAS floor reached, per point of the main grid.

The whole grid is measured once, in one process (``setup_cache`` runs
:func:`bpbench.bench.compare.run_grid`, the code behind ``bpbench compare``), and each point's
``track_`` benchmark reads its number: GFLOP/s = ``net.step_flops(batch)`` / median step
time; floor fraction = :func:`bpbench.bench.floor.blas_floor` / median step time (1.0: as fast as
the step's own matrix products through NumPy's BLAS, nothing else counted).
"""

from . import common


class TrackStepRate:
    """Rates of one SGD step on the TimeStep grid (width 256, float32)."""

    params = (common.IMPLS, common.DEPTHS, common.BATCHES)
    param_names = ["impl", "depth", "batch"]
    timeout = 900

    def setup_cache(self):
        return common.grid_rates()

    def setup(self, cache, impl, depth, batch):
        self.row = common.rate_row(cache, impl, depth, batch)

    def track_gflops(self, cache, impl, depth, batch):
        return self.row["gflops"]

    track_gflops.unit = "GFLOP/s"

    def track_floor_fraction(self, cache, impl, depth, batch):
        return self.row["floor_fraction"]

    track_floor_fraction.unit = "fraction of BLAS floor"
