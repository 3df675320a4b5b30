"""JIT compile cost: seconds of the first step of a fresh model in a new process.

:func:`bpbench.bench.compile_cost.compile_cost` starts a new Python process, builds a model and
times its first step (compilation + one step): ``cold`` with an empty Numba cache, ``warm``
with the cache already filled (what a user pays on the second run of a script). The cold
benchmark leaves its cache folder filled for the warm one (one folder per asv run, deleted with
asv's working directory). The value includes one step; ``TimeStep`` has the steady-state time.
"""

from . import common


class TrackCompile:
    """First-step seconds in a fresh process, width 256, float32."""

    params = (common.IMPLS, [2], [16])
    param_names = ["impl", "depth", "batch"]
    timeout = 600

    def setup_cache(self):
        return common.compile_cache_dir()

    def setup(self, cache, impl, depth, batch):
        self.args = common.compile_args(impl, depth, batch)

    def track_compile_cold(self, cache, impl, depth, batch):
        return common.first_step_seconds(cache, *self.args, warm=False)

    track_compile_cold.unit = "seconds"

    def track_compile_warm(self, cache, impl, depth, batch):
        return common.first_step_seconds(cache, *self.args, warm=True)

    track_compile_warm.unit = "seconds"
