"""asv benchmarks of bpbench (see ``asv.conf.json`` and the README's regression-tracking section).

Benchmark bodies are kept short and stable (editing one changes its asv version and drops its
history); what they build, check and warm up lives in :mod:`benchmarks.common` and
:mod:`bpbench.bench.points`.
"""
