"""Direct BLAS ``gemm`` from compiled code, on row-strided views, with alpha and beta.

Numba's ``np.dot(a, b, out)`` copies any operand that is not C- or F-contiguous
and fixes ``alpha = 1, beta = 0``. :func:`gemm` calls the same BLAS (SciPy's,
through Numba's ``numba_xxgemm`` helper) on any 2-D views whose rows are
contiguous, such as a block of columns of a C-ordered matrix, and exposes alpha
and beta, so an update ``W -= lr * A.T @ dZ`` is one BLAS call with no gradient
buffer and no extra pass over W.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import ensure_blas

from fastbp._jit import jit

_LL_CHAR = ir.IntType(8)
_LL_VOIDP = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``c = alpha * op(a) @ op(b) + beta * c`` (Fortran gemm semantics).

    trans_a / trans_b are booleans; a, b, c arrays of one float dtype (only their
    data pointers are used); m, n, k, lda, ldb, ldc integers.
    """
    if not all(isinstance(t, types.Array) for t in (a, b, c)):
        return None
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    ensure_blas()
    kind = "s" if dtype == types.float32 else "d"
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        ta, tb, vm, vn, vk, valpha, va, vlda, vb, vldb, vbeta, vc, vldc = args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(
            ir.IntType(32),
            [
                *(_LL_CHAR, _LL_CHAR, _LL_CHAR),  # kind, transa, transb
                *(intp, intp, intp),  # m, n, k
                *(_LL_VOIDP, _LL_VOIDP, intp),  # alpha, a, lda
                *(_LL_VOIDP, intp),  # b, ldb
                *(_LL_VOIDP, _LL_VOIDP, intp),  # beta, c, ldc
            ],
        )
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def flag(value, ty):
            is_true = context.cast(builder, value, ty, types.boolean)
            t = ir.Constant(_LL_CHAR, ord("t"))
            nt = ir.Constant(_LL_CHAR, ord("n"))
            return builder.select(is_true, t, nt)

        def as_intp(value, ty):
            return context.cast(builder, value, ty, types.intp)

        def slot(value, ty):
            scalar = context.cast(builder, value, ty, dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, scalar), _LL_VOIDP)

        def data(value, ty):
            return builder.bitcast(make_array(ty)(context, builder, value).data, _LL_VOIDP)

        tys = signature.args
        builder.call(
            fn,
            (
                ir.Constant(_LL_CHAR, ord(kind)),
                flag(ta, tys[0]),
                flag(tb, tys[1]),
                as_intp(vm, tys[2]),
                as_intp(vn, tys[3]),
                as_intp(vk, tys[4]),
                slot(valpha, tys[5]),
                data(va, tys[6]),
                as_intp(vlda, tys[7]),
                data(vb, tys[8]),
                as_intp(vldb, tys[9]),
                slot(vbeta, tys[10]),
                data(vc, tys[11]),
                as_intp(vldc, tys[12]),
            ),
        )
        return context.get_dummy_value()

    return sig, codegen


@jit
def blas_layout(x):
    """How BLAS can read the 2-D array x: ``(kind, ld)``.

    kind 0: rows are contiguous, row r starts at ``r * ld`` elements (row-major);
    kind 1: columns are contiguous (x.T is row-major); kind -1: neither (for
    example a negative or non-unit stride on both axes), BLAS cannot read it.
    """
    item = x.itemsize
    r, c = x.shape
    s0, s1 = x.strides
    if s1 == item or c == 1:
        ld = s0 // item if r > 1 else c
        if ld >= c and (r == 1 or s0 == ld * item):
            return 0, max(ld, 1)
    if s0 == item or r == 1:
        ld = s1 // item if c > 1 else r
        if ld >= r and (c == 1 or s1 == ld * item):
            return 1, max(ld, 1)
    return -1, 0


@jit
def gemm(alpha, a, trans_a, b, trans_b, beta, c):
    """``c[:] = alpha * op(a) @ op(b) + beta * c``; False if BLAS cannot read the views.

    op(x) is ``x.T`` if the flag is set, else ``x``. a, b, c: 2-D arrays of one
    float dtype; c is (m, n), op(a) (m, k), op(b) (k, n). a and b may be row- or
    column-major views with any leading dimension; c must be row-major. With
    ``beta == 0`` c is not read. Returns False, leaving c untouched, when some
    operand has no such layout. Mutates ``c``.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    kind_a, lda = blas_layout(a)
    kind_b, ldb = blas_layout(b)
    kind_c, ldc = blas_layout(c)
    if kind_a < 0 or kind_b < 0 or kind_c != 0:
        return False
    # A column-major operand is the transpose of a row-major one: flip its flag.
    # Row-major C is column-major C.T = op(b).T @ op(a).T: swap the operands.
    _xxgemm(
        trans_b != (kind_b == 1),
        trans_a != (kind_a == 1),
        n,
        m,
        k,
        alpha,
        b,
        ldb,
        a,
        lda,
        beta,
        c,
        ldc,
    )
    return True
