"""Peak memory of one SGD step.

asv's ``peakmem_`` value is the process's maximum resident set size (``ru_maxrss``) when the
call returns: it includes everything before it -- interpreter, libraries, JIT compilation in
setup. So that setup's peaks do not hide the step's, setup here

- checks agreement on 16 rows only and warms up (compiles) on a 1-row batch, so it never runs
  the full batch: the step's buffers and temporaries are first allocated inside the call;
- draws the inputs directly in float32 (no float64 temporary);
- ends with :func:`bpbench.bench.points.reset_peak_rss` (garbage collected, free heap handed back,
  Linux peak RSS reset through /proc/self/clear_refs).

``peakmem_setup`` has the same setup and an empty body: the baseline (libraries, model, inputs).
The step's own working memory is ``peakmem_step - peakmem_setup`` (``bpbench report`` shows it).
Off Linux the reset is a no-op and both numbers include setup's peak. On Linux the values
cannot go below the peak RSS of the process that launched the benchmark process (the kernel
carries it across exec): asv's own, far below a benchmark process with NumPy and Numba loaded.
"""

from . import common


class PeakMemStep:
    """Peak RSS of one SGD step, width 1024, batch 4096, float32, depth 2."""

    params = (common.IMPLS, [2], [common.MEM_BATCH])
    param_names = ["impl", "depth", "batch"]
    timeout = 300

    def setup(self, impl, depth, batch):
        self.point = common.point(impl, depth, batch, width=common.MEM_WIDTH, warm_batch=1,
                                  check_rows=16)
        common.reset_peak_rss()

    def peakmem_step(self, impl, depth, batch):
        self.point.step()

    def peakmem_setup(self, impl, depth, batch):
        pass
