"""What a run was measured under, recorded beside its timings (asv keeps it per commit)."""

from . import common


class TrackThreads:
    """The thread count every contestant was given in this run (``$BPBENCH_THREADS``, else every
    core): timings under different counts are not comparable."""

    def track_threads(self):
        return common.threads()

    track_threads.unit = "threads"
