"""The ``"fit"`` LUT needs only NumPy: its matrix-free conjugate gradients give the tables that the scipy
formulation it replaced gives (sparse normal equations, ``scipy.sparse.linalg.cg`` with a Jacobi
preconditioner), which this test builds again, term by term, as the reference.

Why not bit for bit: both solve the same system with the same iteration (same start, preconditioner,
stopping rule), but the sums run in another order (per-cell 8 x 8 blocks and lattice differences against
CSR rows), so the iterates drift apart by rounding and a channel may stop one step earlier or later.
Measured (OMP_NUM_THREADS=1, NumPy 2.4, scipy 1.17): with the shipped settings at most ~1e-6 apart (float32
tables, ~15 ulp at 1; an 8-bit level is 3.9e-3), so ``TOLERANCE`` is 1e-5. Non-default settings that leave
lattice points the data barely reach nearly undetermined (no smoothing; second differences, whose null
space is every multilinear map, with few colours or toward the identity) are held to cg's own accuracy
instead: there its stop (residual 1e-6 of the right-hand side) leaves the scipy answer 4e-4 to 7e-3 from
the exact solution, at points far from the data, and the NumPy one lands 6e-5 to 7e-3 from it, no further
from the exact solution than scipy's own error; on the photo's own colours they stay within 4e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.inference.lut import fit as fit_module
from recolorize.inference.lut.fit import fit_lut
from recolorize.inference.lut.table import LUT_SIZE, Lut3D, lattice
from recolorize.prior.lattice import trilinear_weights

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TOLERANCE = 1e-5
#: The LUT's outputs on the photo's own colours, in the settings held to cg's accuracy.
ON_THE_DATA = 1e-4


def _scipy_smoothness(size: int, order: int):
    """D^T D of the ``order``-th differences along r, g and b, as the scipy code built it."""
    import scipy.sparse as sp

    if size <= order:
        return sp.csr_matrix((size**3, size**3))
    stencil = ([-1.0, 1.0], [0, 1]) if order == 1 else ([1.0, -2.0, 1.0], [0, 1, 2])
    difference = sp.diags(stencil[0], stencil[1], shape=(size - order, size))
    eye = sp.identity(size, format="csr")
    blocks = [
        sp.kron(sp.kron(difference, eye), eye),
        sp.kron(sp.kron(eye, difference), eye),
        sp.kron(sp.kron(eye, eye), difference),
    ]
    stacked = sp.vstack(blocks).tocsr()
    return (stacked.T @ stacked).tocsr()


def _scipy_fit_offset(
    x: np.ndarray, shift: np.ndarray, size: int, smoothness: float, order: int
) -> np.ndarray:
    """The scipy formulation of ``fit._fit_offset``: the sparse normal matrix and scipy's cg."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import cg

    nodes = size**3
    indices, weights = trilinear_weights(x, size)
    rows = np.repeat(np.arange(len(x)), 8)
    design = sp.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(len(x), nodes))
    spacing = 1.0 / (size - 1)
    reference = (1.0 / (LUT_SIZE - 1)) ** (3 - 2 * order) * (size / LUT_SIZE) ** 3
    weight = smoothness * spacing ** (3 - 2 * order) * (size**3 / LUT_SIZE**3) / reference
    normal = (design.T @ design) * (nodes / len(x)) + _scipy_smoothness(size, order) * weight
    normal = (normal + sp.identity(nodes, format="csr") * fit_module._PRIOR_PULL).tocsr()
    rhs = np.asarray(design.T @ shift) * (nodes / len(x))
    start = None
    if size > fit_module._COARSEST and (size - 1) % 2 == 0:
        half = (size + 1) // 2
        coarse = _scipy_fit_offset(x, shift, half, smoothness, order)
        start = Lut3D(coarse.reshape(half, half, half, 3)).apply(lattice(size)).reshape(-1, 3)
    preconditioner = sp.diags(1.0 / normal.diagonal())
    columns = []
    for channel in range(3):
        solution, info = cg(
            normal,
            rhs[:, channel],
            x0=None if start is None else start[:, channel].astype(np.float64),
            M=preconditioner,
            rtol=fit_module._CG_TOLERANCE,
            maxiter=fit_module._CG_MAX_ITER,
        )
        assert info == 0
        columns.append(solution)
    return np.stack(columns, axis=1)


def _scipy_fit_lut(
    monkeypatch: pytest.MonkeyPatch, source: np.ndarray, output: np.ndarray, **kwargs
) -> Lut3D:
    """``fit_lut`` with the scipy solve in place of the NumPy one (the rest of the fit is shared)."""
    with monkeypatch.context() as patch:
        patch.setattr(fit_module, "_fit_offset", _scipy_fit_offset)
        return fit_lut(source, output, **kwargs)


def _exact_fit_lut(
    monkeypatch: pytest.MonkeyPatch, source: np.ndarray, output: np.ndarray, **kwargs
) -> Lut3D:
    """The same system solved far past the shipped stop (residual 1e-12 of the right-hand side)."""
    with monkeypatch.context() as patch:
        patch.setattr(fit_module, "_CG_TOLERANCE", 1e-12)
        return fit_lut(source, output, **kwargs)


def _compare(monkeypatch, source, output, kwargs, exactly: bool) -> None:
    """The NumPy and the scipy fit agree to ``TOLERANCE``; or (``exactly`` False: a nearly undetermined
    lattice) no further apart than scipy's answer is from the exact solution, and to ``ON_THE_DATA`` on
    the photo's colours."""
    ours = fit_lut(source, output, **kwargs)
    theirs = _scipy_fit_lut(monkeypatch, source, output, **kwargs)
    assert ours.table.shape == theirs.table.shape
    assert not np.array_equal(ours.table, lattice(ours.size))  # a real fit, not the identity on both sides
    difference = np.abs(ours.table.astype(np.float64) - theirs.table).max()
    if exactly:
        assert difference <= TOLERANCE, (kwargs, difference)
        return
    exact = _exact_fit_lut(monkeypatch, source, output, **kwargs).table.astype(np.float64)
    solver_error = np.abs(theirs.table - exact).max()
    assert difference <= max(TOLERANCE, 2.0 * solver_error), (kwargs, difference, solver_error)
    on_the_data = np.abs(ours.apply(source) - theirs.apply(source)).max()
    assert on_the_data <= ON_THE_DATA, (kwargs, on_the_data)


def _photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "source.jpg").convert("RGB"), dtype=np.float32) / 255.0


def _graded(rgb: np.ndarray) -> np.ndarray:
    """A grade no global affine map holds: a cross-talk matrix, a per-channel curve, warmer shadows."""
    matrix = np.array([[0.80, 0.15, 0.05], [0.05, 0.85, 0.10], [0.10, 0.10, 0.80]])
    out = np.clip(rgb.astype(np.float64) @ matrix.T, 0.0, 1.0) ** np.array([0.9, 1.1, 1.25])
    shadow = (1.0 - rgb.mean(axis=-1, keepdims=True)) ** 2
    return np.clip(out + shadow * np.array([0.06, 0.02, -0.04]), -0.1, 1.1)  # beyond [0, 1], as renders are


def _few_colours() -> tuple[np.ndarray, np.ndarray]:
    """A photo posterised to 12 colours: the data reach a few dozen of the lattice's cells."""
    rgb = _photo()[::2, ::2]
    palette = np.random.default_rng(1).random((12, 3)).astype(np.float32)
    nearest = np.argmin(((rgb[:, :, None, :] - palette) ** 2).sum(-1), axis=-1)
    source = palette[nearest]
    return source, _graded(source)


@pytest.mark.parametrize(
    ("kwargs", "exactly"),
    [
        ({}, True),  # the defaults: 33^3, first differences, the affine prior (nested 9 -> 17 -> 33)
        ({"size": 17, "order": 2}, True),
        ({"size": 17, "order": 2, "prior": "identity", "smoothness": 0.3}, False),
        ({"size": 9, "smoothness": 0.0}, False),
    ],
    ids=["defaults", "order2-17", "order2-identity-17", "unsmoothed-9"],
)
def test_numpy_fit_equals_the_scipy_formulation_on_a_graded_photo(monkeypatch, kwargs, exactly) -> None:
    pytest.importorskip("scipy")
    source = _photo()
    _compare(monkeypatch, source, _graded(source), kwargs, exactly)


@pytest.mark.parametrize(("kwargs", "exactly"), [({}, True), ({"size": 17, "order": 2}, False)])
def test_numpy_fit_equals_the_scipy_formulation_on_few_colours(monkeypatch, kwargs, exactly) -> None:
    pytest.importorskip("scipy")
    source, output = _few_colours()
    _compare(monkeypatch, source, output, kwargs, exactly)


def test_numpy_fit_equals_the_scipy_formulation_on_a_single_colour_and_on_no_change(monkeypatch) -> None:
    """A photo of one colour (the prior pull keeps the system solvable) and an identity transfer (a zero
    right-hand side: cg returns zero at once)."""
    pytest.importorskip("scipy")
    grey = np.full((40, 30, 3), 0.5, dtype=np.float32)
    rgb = _photo()[::4, ::4]
    for source, output in ((grey, grey * 0.8), (rgb, rgb)):
        ours = fit_lut(source, output).table
        theirs = _scipy_fit_lut(monkeypatch, source, output).table
        assert np.abs(ours.astype(np.float64) - theirs).max() <= TOLERANCE


def test_the_matrix_free_operator_is_the_sparse_normal_matrix() -> None:
    """The operator itself, on random vectors, against the assembled sparse matrix (rounding only)."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    x = rng.random((5000, 3)) ** 2  # uneven: some cells empty
    for size, order, smoothness in ((9, 1, 1.0), (6, 2, 0.5), (2, 2, 1.0), (3, 1, 0.0)):
        nodes = size**3
        indices, weights = trilinear_weights(x, size)
        rows = np.repeat(np.arange(len(x)), 8)
        design = sp.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(len(x), nodes))
        weight = 0.7 * smoothness
        matrix = (design.T @ design) * (nodes / len(x)) + _scipy_smoothness(size, order) * weight
        matrix = matrix + sp.identity(nodes) * fit_module._PRIOR_PULL
        operator = fit_module._NormalOperator(indices, weights, nodes / len(x), size, order, weight)
        u = rng.standard_normal((3, nodes))
        assert np.allclose(operator(u), (matrix @ u.T).T, rtol=1e-12, atol=1e-12)
        assert np.allclose(operator.diagonal, matrix.diagonal(), rtol=1e-13, atol=0)


def test_fit_lut_runs_with_scipy_sparse_unimportable() -> None:
    """The fit never touches scipy.sparse. (Not all of scipy yet: the LUT package imports the prior, and
    recolorize.prior.colour_map still imports scipy.linalg for its Cholesky solve.)"""
    from cli_helpers import run_python

    code = (
        "import sys\n"
        "sys.modules['scipy.sparse'] = None\n"
        "import numpy as np\n"
        "from recolorize.inference.lut import fit_lut\n"
        "rgb = np.random.default_rng(0).random((64, 64, 3))\n"
        "lut = fit_lut(rgb, rgb ** 1.2)\n"
        "assert lut.table.shape == (33, 33, 33, 3) and np.isfinite(lut.table).all()\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.sparse')))\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['scipy.sparse']"  # only the blocking entry
