"""``bpbench.fastest``: which implementation runs ``step`` fastest here, for this shape and dtype.

A short race, measured and remembered::

    Impl = bpbench.fastest(net, batch_size=256)      # a class, e.g. NumbaParallelImplementation
    model = Impl(net, net.init(seed=0))

Each available candidate is built on the same seeded parameters and batch, its loss and
gradients checked against the float64 reference (first row in float32, first 8 rows in
float64; see :func:`bpbench.bench.points.build`), warmed up (JIT compilation excluded from the race)
and timed by :func:`bpbench.bench.engine.measure` with the run's thread count -- the engine
``bpbench compare`` times with.
The winner's name is memoised in the process and cached on disk, so asking again is instant,
also in a new process.

The disk cache is one JSON file, ``fastest.json`` in ``$BPBENCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/bpbench``, else ``~/.cache/bpbench``. An entry is keyed by the machine
(:func:`bpbench.bench.machine.name`: CPU model, core count, GPUs), the thread count
(:mod:`bpbench.bench.threads`), the versions of bpbench, NumPy and Numba, the network's
shape, activations, loss and dtype, the batch size and the candidates; entries written under
other versions on this machine are ignored (and dropped at the next write). Clear it with
:func:`clear_cache` or ``bpbench fastest --clear``, or delete the file.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
from importlib import metadata

from .. import registry
from ..checks import check_positive_int
from ..network import Network
from . import engine, machine, peers, points
from . import threads as pools

#: the race: the engine's "race" preset (~0.1 s of samples per candidate, at most 0.5 s)
RACE_TIMING = engine.PRESETS["race"]
#: rows of the batch the candidates' answers are checked on before the race (float64; a
#: float32 point is checked on its first row, see bpbench.bench.points._check_point)
CHECK_ROWS = 8
CACHE_FILE = "fastest.json"

_memo = {}


def cache_dir():
    """The folder of the disk cache (:func:`bpbench.bench.machine.cache_dir`)."""
    return machine.cache_dir()


def cache_path():
    """The disk cache's file."""
    return os.path.join(cache_dir(), CACHE_FILE)


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _fingerprint():
    from .. import __version__

    return {"machine": machine.name(), "bpbench": __version__, "numpy": _version("numpy"),
            "numba": _version("numba")}


def fingerprint():
    """What an entry is valid for: this machine, thread count and package versions (a new dict).

    Looked up once per process (package metadata lookups take milliseconds); the thread count
    is read each time (``$BPBENCH_THREADS`` may change).
    """
    return {**_fingerprint(), "threads": pools.resolve()}


def _key(net, batch_size, names):
    """The cache key of one question, as a string (JSON of its parts)."""
    return json.dumps({"sizes": list(net.sizes), "activations": list(net.activations),
                       "loss": net.loss, "dtype": net.dtype.name, "batch": batch_size,
                       "candidates": sorted(names), **fingerprint()}, sort_keys=True)


def _read_cache():
    try:
        with open(cache_path()) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):  # unreadable or corrupt: start again rather than fail
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key, entry):
    """Add an entry, dropping entries from this machine under other versions; atomic replace."""
    data = _read_cache()
    current = fingerprint()
    stale = [k for k in data if _is_stale(k, current)]
    for k in stale:
        del data[k]
    data[key] = entry
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = f"{cache_path()}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, cache_path())


def _is_stale(key, current):
    """True for an entry of this machine whose versions differ from the current ones."""
    try:
        parts = json.loads(key)
    except ValueError:
        return True
    same_machine = parts.get("machine") == current["machine"]
    return same_machine and any(parts.get(k) != current[k] for k in ("bpbench", "numpy", "numba"))


def clear_cache():
    """Forget every answer: the in-process memo and the disk cache file. Returns the file's path."""
    _memo.clear()
    path = cache_path()
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    return path


def _check_args(net, batch_size, candidates):
    if not isinstance(net, Network):
        raise ValueError(f"net must be a bpbench.Network, got {type(net).__name__}")
    batch_size = check_positive_int(batch_size, "batch_size")
    known = registry.names()
    if candidates is None:
        names = registry.available()
    else:
        if isinstance(candidates, str) or not hasattr(candidates, "__iter__"):
            raise ValueError(
                f"candidates must be a list of implementation names, got {candidates!r}")
        names = list(candidates)
        peer_names = [n for n in names if isinstance(n, str) and n in peers.PEERS]
        if peer_names:
            # fastest answers with a class that honours the contract (Impl(net, params),
            # validated step/forward/...); a peer does not, so it can only be compared
            listed = ",".join(dict.fromkeys(n for n in names if isinstance(n, str)))
            raise ValueError(
                f"candidates: {', '.join(map(repr, peer_names))} "
                f"{'is a peer' if len(peer_names) == 1 else 'are peers'} (another framework "
                "timed beside bpbench), not an implementation fastest can return; compare "
                f"them with `bpbench compare --impls {listed}` or "
                "bpbench.bench.selection.race(net, batch_size, names); "
                f"implementations: {', '.join(known)}")
        bad = [n for n in names if not isinstance(n, str) or n not in known]
        names = list(dict.fromkeys(n for n in names if n not in bad))  # bad may be unhashable
        if bad or not names:
            raise ValueError(f"candidates: unknown {', '.join(map(repr, bad)) or 'empty list'}; "
                             f"known: {', '.join(known)}")
    usable = [n for n in names if points.unavailable(n) is None]
    if not usable:
        reasons = "; ".join(f"{n}: {points.unavailable(n)}" for n in names)
        raise ValueError(f"candidates: none is available here ({reasons})")
    return batch_size, usable


def _memo_key(net, batch_size, candidates):
    """The in-process memo's key, or None when the arguments cannot be one (checked later)."""
    # only arguments that pass the checks may hit the memo: 2.0 == 2 as a dict key, but a
    # float batch size is refused
    if (not isinstance(net, Network) or isinstance(batch_size, bool)
            or not isinstance(batch_size, numbers.Integral)
            or not (candidates is None or isinstance(candidates, list))):
        return None
    key = (net, batch_size, None if candidates is None else tuple(candidates))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def race(net, batch_size, names):
    """Median step seconds per candidate name (the measured race; no caching).

    ``names`` may include peers (:mod:`bpbench.bench.peers`): the race times them like the
    implementations, which is how to ask whether a peer would win (``fastest`` refuses them).
    """
    runners = [n for n in names if points.too_slow(n, net, batch_size) is None] or names[:1]
    medians = {}
    for name in runners:
        # checked on a few rows in the race's own dtype (no float64 twin: no second compile)
        m = engine.measure(name, net, batch_size, settings=RACE_TIMING, check_rows=CHECK_ROWS,
                           warmup=1, twin=False)
        medians[name] = m.timing.median
    return medians


def fastest(net, batch_size, candidates=None):
    """The implementation class whose ``step`` is fastest here for ``net`` at ``batch_size``.

    ``candidates``: implementation names to choose from (default: every available one);
    unavailable ones are left out. Pure Python (``naive``) is left out of the race at sizes
    where one step takes more than about 0.2 s (:data:`bpbench.bench.points.NAIVE_MAX_FLOPS`) when
    another candidate exists. A single usable candidate is returned without a race.
    Raises ValueError for a bad argument, or when no candidate is available here. Peers
    (``torch``, ``torch_compile``, ``jax``) are refused as candidates, with a ValueError that
    says how to compare them instead: the answer is a class honouring the contract
    (``Impl(net, params)``, validated ``step``, ``forward``, ...), which a peer is not.
    """
    if candidates is not None and not isinstance(candidates, str) and hasattr(candidates,
                                                                               "__iter__"):
        candidates = list(candidates)  # a generator is read once
    # the in-process answer first: a repeated question costs a dict lookup (the checks below
    # ask the registry, which takes milliseconds); a hit was checked when first asked
    memo_key = _memo_key(net, batch_size, candidates)
    if memo_key is not None and memo_key in _memo:
        return _memo[memo_key]
    batch_size, names = _check_args(net, batch_size, candidates)
    if len(names) == 1:
        winner = names[0]
    else:
        key = _key(net, batch_size, names)
        entry = _read_cache().get(key)
        if isinstance(entry, dict) and entry.get("winner") in names:
            winner = entry["winner"]
        else:
            medians = race(net, batch_size, names)
            winner = min(medians, key=medians.get)
            _write_cache(key, {"winner": winner, "median_s": medians})
    cls = registry.get(winner)
    if memo_key is not None:
        _memo[memo_key] = cls
    return cls


# ---------------------------------------------------------------------------- command line
def add_arguments(parser):
    """Options of ``bpbench fastest``."""
    parser.add_argument("--sizes", default="256,256,256,10",
                        help="layer widths, input first (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="batch size (default: %(default)s)")
    parser.add_argument("--dtype", default="float32",
                        help="float32 or float64 (default: %(default)s)")
    parser.add_argument("--activation", default="relu",
                        help="hidden activation (default: %(default)s)")
    parser.add_argument("--loss", default="cross_entropy",
                        help="mse or cross_entropy (default: %(default)s)")
    parser.add_argument("--clear", action="store_true",
                        help="delete the cached answers (and do nothing else)")


def run(args):
    """``bpbench fastest``: print the winner's name, or clear the cache."""
    if args.clear:
        print(f"cleared {clear_cache()}")
        return 0
    try:
        sizes = tuple(int(v) for v in args.sizes.split(","))
    except ValueError:
        raise ValueError(f"sizes must be comma-separated ints, got {args.sizes!r}") from None
    net = Network(sizes, activation=args.activation, loss=args.loss, dtype=args.dtype)
    print(fastest(net, args.batch_size).name)
    return 0
