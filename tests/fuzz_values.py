"""Generated arguments for the fuzz suite (tests/fuzz_child.py), each tagged valid or not.

Every strategy here draws an :class:`Arg`: the value handed to an entry point, whether the
contract says it must be accepted (``ok``), a short label for the log, and whether it is valid
but outside the well-conditioned range (``extreme``: huge values, a huge lr), where results are
checked for type and shape but not compared with the ``numpy`` oracle. The tags are written from
the contract (/work/shared/CONTRACT.md), not from bpbench's checks, so a disagreement between
the two is a finding: a valid value refused or an invalid one accepted.

Array values come from a seeded NumPy generator (hypothesis draws the seed and every structural
choice: dtype, layout, shape, which entry is special), so the suite stays fast on tiny shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

import bpbench


@dataclass(frozen=True)
class Arg:
    """One argument: its value, valid or not by the contract, a label, and extreme or not."""

    value: Any
    ok: bool
    label: str
    extreme: bool = False


def good(value, label, extreme=False):
    return Arg(value, True, label, extreme)


def bad(value, label):
    return Arg(value, False, label)


def split(args):
    """(strategy of the valid Args, strategy of the invalid ones) of a list of Args."""
    goods = [a for a in args if a.ok]
    bads = [a for a in args if not a.ok]
    return st.sampled_from(goods), (st.sampled_from(bads) if bads else None)


#: how many arguments of a call are invalid: none in half the calls, else one or two
N_BAD = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]


def arguments(data, specs):
    """name -> Arg for one call. specs: name -> (valid strategy, invalid strategy or None).

    Half the calls get only valid arguments (they must be accepted); the others one or two
    invalid ones, chosen at random (the refusal must name one of them).
    """
    can_be_bad = [n for n, (_, b) in specs.items() if b is not None]
    n_bad = min(data.draw(st.sampled_from(N_BAD), label="invalid arguments"), len(can_be_bad))
    chosen = set(data.draw(st.permutations(can_be_bad), label="order")[:n_bad]) if n_bad else ()
    return {n: data.draw(b if n in chosen else g, label=n) for n, (g, b) in specs.items()}


# ---------------------------------------------------------------- arrays of real numbers
#: source dtypes a caller may hand in (converted to the net's dtype)
REAL_SOURCES = ["float64", "float32", "float16", "longdouble", "int64", "int32", "int8",
                "uint8", "uint64", ">f8", ">f4", ">i8"]
#: how the array is laid out in memory, or what container holds it
LAYOUTS = ["c", "c", "f", "strided", "reversed", "readonly", "unaligned", "broadcast", "list",
           "object"]
#: magnitude of the values: well-conditioned, tiny (subnormal-ish) or huge (valid, extreme)
MAGNITUDES = ["normal", "normal", "normal", "tiny", "huge"]

def _laid_out(a, layout):
    """a (an ndarray) in the given layout, values unchanged."""
    if layout == "c":
        return np.ascontiguousarray(a)
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "strided":  # every other element of a wider array along the last axis
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else a
        if a.ndim:
            wide[..., ::2] = a
            return wide[..., ::2]
        return a
    if layout == "reversed":  # negative strides
        flipped = np.ascontiguousarray(a[::-1]) if a.ndim else a
        return flipped[::-1] if a.ndim else a
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "unaligned":  # the data start one byte into a buffer
        if a.dtype.itemsize == 1 or a.ndim == 0:
            return a
        raw = np.zeros(a.nbytes + 1, np.uint8)
        u = raw[1:].view(a.dtype).reshape(a.shape)
        u[...] = a
        return u
    if layout == "broadcast":  # zero strides: every row is the first row (read-only)
        if a.ndim == 0:
            return a
        return np.broadcast_to(a[:1], a.shape)
    if layout == "list":
        return a.tolist()
    if layout == "object":
        return a.astype(object)
    raise ValueError(layout)


def _values(rng, shape, source, magnitude):
    """Values of the given source dtype: (array, extreme)."""
    dt = np.dtype(source)
    v = rng.standard_normal(shape) * 2
    extreme = False
    if dt.kind in "iu":
        info = np.iinfo(dt)
        v = np.clip(np.round(np.abs(v) if dt.kind == "u" else v), info.min, info.max)
        if magnitude == "huge" and dt.itemsize >= 8 and v.size:
            v.flat[0] = 2.0 ** 62  # exact in int64 and uint64
            extreme = True
        return v.astype(dt), extreme
    if magnitude == "tiny":
        v = v * 1e-30
    elif magnitude == "huge" and v.size and float(np.finfo(dt).max) > 1e30:
        v.flat[0] = 1e30 * np.sign(v.flat[0] or 1)
        extreme = True
    return v.astype(dt), extreme


@st.composite
def real_arrays(draw, shape, net_dtype, *, allow_special=True):
    """A valid array of real numbers of this shape (any source dtype and layout), as an Arg."""
    source = draw(st.sampled_from(REAL_SOURCES))
    layout = draw(st.sampled_from(LAYOUTS))
    magnitude = draw(st.sampled_from(MAGNITUDES)) if allow_special else "normal"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a, extreme = _values(rng, shape, source, magnitude)
    value = _laid_out(a, layout)
    return good(value, f"{source} {shape} {layout} {magnitude}", extreme)


def _float_with(shape, index, value, dtype=np.float64):
    a = np.ones(shape, dtype=dtype)
    a.flat[index] = value
    return a


@st.composite
def bad_values_in(draw, shape, net_dtype):
    """An array of the right shape that holds something the contract refuses, as an Arg."""
    size = int(np.prod(shape))
    index = draw(st.integers(0, max(size - 1, 0)))
    f32 = np.dtype(net_dtype) == np.float32
    choices = ["nan", "inf", "-inf", "bool", "complex", "str", "bytes", "datetime", "timedelta",
               "struct", "object None", "object str", "python int 10**400", "longdouble 1e400"]
    if f32:
        choices.append("beyond float32")
    kind = draw(st.sampled_from(choices))
    if kind == "nan":
        v = _float_with(shape, index, np.nan)
    elif kind == "inf":
        v = _float_with(shape, index, np.inf, draw(st.sampled_from([np.float64, np.float16])))
    elif kind == "-inf":
        v = _float_with(shape, index, -np.inf)
    elif kind == "bool":
        v = np.ones(shape, bool)
    elif kind == "complex":
        v = np.ones(shape, draw(st.sampled_from([np.complex128, np.complex64])))
    elif kind == "str":
        v = np.full(shape, "1.0")
    elif kind == "bytes":
        v = np.full(shape, b"1")
    elif kind == "datetime":
        v = np.zeros(shape, "M8[s]")
    elif kind == "timedelta":
        v = np.zeros(shape, "m8[s]")
    elif kind == "struct":
        v = np.zeros(shape, "f8,f8")
    elif kind == "object None":
        v = np.ones(shape, object)
        v.flat[index] = None
    elif kind == "object str":
        v = np.ones(shape, object)
        v.flat[index] = "one"
    elif kind == "python int 10**400":  # finite as an int, not as any float
        v = np.ones(shape).tolist()
        _set_nested(v, shape, index, 10**400)
    elif kind == "longdouble 1e400":
        v = _float_with(shape, index, np.longdouble("1e400"), np.longdouble)
    else:  # beyond float32: finite in float64, inf once rounded to the float32 net's dtype
        v = _float_with(shape, index, 1e39)
    return bad(v, f"{kind} in {shape}")


def _set_nested(nested, shape, flat_index, value):
    """nested[...][...] = value at a flat index of a nested list of the given shape."""
    idx = np.unravel_index(flat_index, shape)
    target = nested
    for i in idx[:-1]:
        target = target[i]
    target[idx[-1]] = value


NOT_ARRAYS = [None, "abc", {"a": 1}, object(), {1, 2}, 3 + 4j]


# ---------------------------------------------------------------- X, y for a net
def inputs(net, B):
    """X for a batch of B rows: (valid: any real dtype or layout, invalid)."""
    return real_arrays((B, net.sizes[0]), net.dtype), bad_inputs(net, B)


@st.composite
def bad_inputs(draw, net, B):
    n = net.sizes[0]
    kind = draw(st.sampled_from(["values", "values", "1-D", "3-D", "0-D", "wider", "narrower",
                                 "empty", "ragged", "not an array"]))
    if kind == "values":
        return draw(bad_values_in((B, n), net.dtype))
    shapes = {"1-D": (n,), "3-D": (1, B, n), "0-D": (), "wider": (B, n + 1),
              "narrower": (B, n - 1), "empty": (0, n)}
    if kind in shapes:
        return bad(np.ones(shapes[kind]), f"X of shape {shapes[kind]}")
    if kind == "ragged":
        return bad([[1.0] * n, [1.0] * (n + 1)], "ragged rows")
    return bad(draw(st.sampled_from(NOT_ARRAYS)), "not an array")


def targets(net, B):
    """y for a batch of B rows, as the net's loss wants it: (valid, invalid)."""
    if net.loss == "cross_entropy":
        return class_labels(net, B), bad_class_labels(net, B)
    return regression_targets(net, B), bad_regression_targets(net, B)


LABEL_SOURCES = ["int64", "int32", "int16", "int8", "uint8", "uint64", ">i8"]


@st.composite
def class_labels(draw, net, B):
    K = net.sizes[-1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, K, B).astype(draw(st.sampled_from(LABEL_SOURCES)))
    layout = draw(st.sampled_from(["c", "strided", "reversed", "readonly", "unaligned", "list"]))
    return good(_laid_out(labels, layout), f"labels {labels.dtype} ({B},) {layout}")


@st.composite
def bad_class_labels(draw, net, B):
    K = net.sizes[-1]
    labels = np.arange(B) % K
    index = draw(st.integers(0, B - 1))
    kind = draw(st.sampled_from(["K", "-1", "huge", "uint64 max", "float", "bool", "one-hot",
                                 "column", "one more", "one fewer", "0-D", "str", "object",
                                 "complex", "not an array"]))
    if kind in ("K", "-1", "huge"):
        labels[index] = {"K": K, "-1": -1, "huge": 2**63 - 1}[kind]
        return bad(labels, f"label {kind}")
    if kind == "uint64 max":
        v = labels.astype(np.uint64)
        v[index] = np.iinfo(np.uint64).max
        return bad(v, "label 2**64 - 1")
    variants = {
        "float": labels.astype(np.float64),            # whole numbers, but floats
        "bool": labels.astype(bool),
        "one-hot": np.eye(K)[labels],
        "column": labels[:, None],
        "one more": np.arange(B + 1) % K,
        "one fewer": np.arange(B - 1) % K,
        "0-D": np.int64(0),
        "str": labels.astype(str),
        "object": labels.astype(object),
        "complex": labels.astype(complex),
    }
    if kind in variants:
        return bad(variants[kind], f"labels {kind}")
    return bad(draw(st.sampled_from(NOT_ARRAYS)), "not an array")


@st.composite
def regression_targets(draw, net, B):
    K = net.sizes[-1]
    shape = (B, K) if K > 1 or draw(st.booleans()) else (B,)  # (B,) is accepted when K == 1
    arg = draw(real_arrays(shape, net.dtype))
    return good(arg.value, "targets " + arg.label, arg.extreme)


@st.composite
def bad_regression_targets(draw, net, B):
    K = net.sizes[-1]
    kind = draw(st.sampled_from(["values", "values", "one more row", "one fewer row", "K + 1",
                                 "1-D", "3-D", "transposed", "not an array"]))
    if kind == "values":
        return draw(bad_values_in((B, K), net.dtype))
    if kind == "1-D" and K == 1:
        kind = "K + 1"  # (B,) is valid when K == 1
    if kind == "transposed" and B == K:
        kind = "one more row"
    shapes = {"one more row": (B + 1, K), "one fewer row": (B - 1, K), "K + 1": (B, K + 1),
              "1-D": (B,), "3-D": (1, B, K), "transposed": (K, B)}
    if kind in shapes:
        return bad(np.ones(shapes[kind]), f"targets of shape {shapes[kind]}")
    return bad(draw(st.sampled_from(NOT_ARRAYS)), "not an array")


# ---------------------------------------------------------------- scalars
def learning_rates():
    """lr: (a positive finite real of any numeric type, something else)."""
    return split([
        good(0.1, "0.1"), good(0.05, "0.05"), good(np.float32(0.1), "np.float32(0.1)"),
        good(np.float16(0.25), "np.float16(0.25)"), good(np.float64(0.5), "np.float64(0.5)"),
        good(np.array(0.1), "0-d array 0.1"), good(Fraction(1, 10), "Fraction(1, 10)"),
        good(np.int64(1), "np.int64(1)", extreme=True), good(5e-324, "5e-324"),
        good(1e-7, "1e-7"), good(3, "3", extreme=True), good(1e300, "1e300", extreme=True),
        good(np.longdouble("1e300"), "longdouble 1e300", extreme=True),
        bad(0, "0"), bad(0.0, "0.0"), bad(-0.0, "-0.0"), bad(-0.1, "-0.1"),
        bad(float("nan"), "nan"), bad(float("inf"), "inf"), bad(-float("inf"), "-inf"),
        bad(True, "True"), bad(False, "False"), bad("0.1", "'0.1'"), bad(None, "None"),
        bad([0.1], "[0.1]"), bad(np.array([0.1]), "array([0.1])"), bad(1 + 0j, "1+0j"),
        bad(10**400, "10**400"), bad(np.longdouble("1e400"), "longdouble 1e400"),
        bad(np.array(0.1, dtype=object), "0-d object array"), bad(np.bool_(True), "np.True_"),
        bad(np.float64("nan"), "np.nan"), bad(-(10**400), "-10**400"),
    ])


def positive_ints(name, low=1, high=4, *, huge=True):
    """(a positive int of any integer type, something else)."""
    values = [good(v, str(v)) for v in range(low, high + 1)]
    values += [good(np.int64(high), f"np.int64({high})"), good(np.uint8(low), f"np.uint8({low})")]
    if huge:
        values += [good(10**30, "10**30")]
    refused = [bad(0, "0"), bad(-1, "-1"), bad(2.0, "2.0"), bad(True, "True"),
               bad(None, "None"), bad("2", "'2'"), bad(np.float64(2), "np.float64(2)"),
               bad([2], "[2]"), bad(np.array([2]), "array([2])")]
    return split(values + refused)


def seeds():
    """(a non-negative int, something else)."""
    return split([good(0, "0"), good(7, "7"), good(np.uint64(3), "np.uint64(3)"),
                            good(2**70, "2**70"), bad(-1, "-1"), bad(1.5, "1.5"),
                            bad(True, "True"), bad(None, "None"), bad("0", "'0'")])


# ---------------------------------------------------------------- orders of rows
ORDER_SOURCES = ["int64", "int32", "int16", "uint8", "uint64", ">i8", "intp"]


def orders(n):
    """(a permutation of range(n) of any integer type and layout, something that is not)."""
    return permutations(n), bad_orders(n)


@st.composite
def permutations(draw, n):
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(n)
    source = draw(st.sampled_from(ORDER_SOURCES))
    layout = draw(st.sampled_from(["c", "strided", "reversed", "readonly", "unaligned", "list"]))
    return good(_laid_out(perm.astype(source), layout), f"permutation {source} {layout}")


@st.composite
def bad_orders(draw, n):
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(n)
    kinds = ["index n", "index -1", "index 10**9", "repeated", "one short", "one long",
             "floats", "bools", "2-D", "strings", "object", "None", "uint64 max"]
    kind = draw(st.sampled_from(kinds))
    i = draw(st.integers(0, n - 1))
    if kind in ("index n", "index -1", "index 10**9"):
        perm[i] = {"index n": n, "index -1": -1, "index 10**9": 10**9}[kind]
        return bad(perm, f"order with {kind}")
    if kind == "repeated":
        if n == 1:
            return bad(np.array([0, 0]), "order with a row twice (too long)")
        perm[i] = perm[(i + 1) % n]
        return bad(perm, "order with a repeated row")
    if kind == "uint64 max":
        v = perm.astype(np.uint64)
        v[i] = np.iinfo(np.uint64).max
        return bad(v, "order with 2**64 - 1")
    variants = {"one short": perm[:-1], "one long": np.append(perm, perm[0]),
                "floats": perm.astype(np.float64), "bools": np.ones(n, bool),
                "2-D": perm[None], "strings": perm.astype(str), "object": perm.astype(object),
                "None": None}
    return bad(variants[kind], f"order {kind}")


# ---------------------------------------------------------------- networks and parameters
def dtype_spellings(name):
    """Ways of saying float32 / float64 that the contract accepts."""
    short = {"float32": "f4", "float64": "f8"}[name]
    return st.sampled_from([name, np.dtype(name), getattr(np, name), short, f"<{short}",
                            f">{short}", np.dtype(f">{short}")])


@st.composite
def nets(draw, max_width=4, max_depth=2, spell_dtype=True):
    """A small valid Network (every activation, both losses, both dtypes, any spelling)."""
    depth = draw(st.integers(0, max_depth))
    sizes = tuple(draw(st.integers(1, max_width)) for _ in range(depth + 2))
    acts = [draw(st.sampled_from(["relu", "tanh", "sigmoid"])) for _ in range(depth)]
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    if loss == "cross_entropy" and sizes[-1] == 1 and draw(st.booleans()):
        sizes = sizes[:-1] + (2,)
    name = draw(st.sampled_from(["float32", "float64"]))
    dtype = draw(dtype_spellings(name)) if spell_dtype else name
    return bpbench.Network(sizes, activation=acts or "relu", loss=loss, dtype=dtype)


def param_lists(net):
    """params for net: (valid: any real dtype, layout and container, invalid)."""
    return good_params(net), bad_params(net)


@st.composite
def good_params(draw, net):
    pairs, labels = [], []
    for w_shape, b_shape in net.shapes():
        W = draw(real_arrays(w_shape, net.dtype, allow_special=False))
        b = draw(real_arrays(b_shape, net.dtype, allow_special=False))
        pairs.append((W.value, b.value))
        labels.append(f"W {W.label}, b {b.label}")
    container = draw(st.sampled_from(["list of tuples", "tuple of tuples", "list of lists"]))
    if container == "tuple of tuples":
        pairs = tuple(pairs)
    elif container == "list of lists":
        pairs = [list(p) for p in pairs]
    return good(pairs, f"{container}: " + "; ".join(labels))


@st.composite
def bad_params(draw, net):
    shapes = net.shapes()
    layer = draw(st.integers(0, len(shapes) - 1))
    good_pairs = [(np.full(w, 0.1), np.zeros(b)) for w, b in shapes]
    W, b = good_pairs[layer]
    kinds = ["one fewer pair", "one more pair", "W transposed", "b too long", "b as a column",
             "bad W values", "bad b values", "not pairs", "triples", "None", "an array",
             "a string", "a generator"]
    kind = draw(st.sampled_from(kinds))
    if kind == "W transposed" and W.shape[0] == W.shape[1]:
        kind = "b too long"
    pairs = list(good_pairs)
    if kind == "one fewer pair":
        pairs = pairs[:-1]
    elif kind == "one more pair":
        pairs = pairs + pairs[:1]
    elif kind == "W transposed":
        pairs[layer] = (W.T, b)
    elif kind == "b too long":
        pairs[layer] = (W, np.zeros(len(b) + 1))
    elif kind == "b as a column":
        pairs[layer] = (W, b[:, None])
    elif kind == "bad W values":
        pairs[layer] = (draw(bad_values_in(W.shape, net.dtype)).value, b)
    elif kind == "bad b values":
        pairs[layer] = (W, draw(bad_values_in(b.shape, net.dtype)).value)
    elif kind == "not pairs":
        pairs = [p[0] for p in pairs]  # a 2-row W unpacks into two rows of the wrong shape
    elif kind == "triples":
        pairs[layer] = (W, b, b)
    elif kind == "None":
        pairs = None
    elif kind == "an array":
        pairs = np.zeros(len(shapes))
    elif kind == "a string":
        pairs = "W, b"
    else:
        pairs = (p for p in good_pairs)
    return bad(pairs, f"params: {kind} (layer {layer})")
