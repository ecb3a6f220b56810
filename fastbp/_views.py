"""Views of preallocated buffers inside compiled code, made without any call.

The compiled loop keeps a whole network in flat 1-D buffers and needs per-layer
2-D views of them several times per step. ``buf[a:b].reshape((m, n))`` calls a C
helper (``numba_attempt_nocopy_reshape``) and checks bounds every time; at the
size of the ``[2, 4, 1]`` network those calls are a measurable part of a step.
These intrinsics build the view's struct directly: a pointer, a shape, strides.

The views do not own their memory and are not bounds-checked: use them only in
compiled code, on arrays that the Python caller keeps alive for the whole call,
and never return them to Python (fastbp's compiled code runs without Numba's
reference counting: see :mod:`fastbp._jit`).
"""

from __future__ import annotations

from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


def _intp(context, builder, value, ty):
    return context.cast(builder, value, ty, types.intp)


@intrinsic
def block(typingctx, buf, offset, m, n):
    """``buf[offset:offset + m * n].reshape((m, n))``, C-contiguous; buf 1-D C-contiguous."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        return None
    view = types.Array(buf.dtype, 2, "C", readonly=not buf.mutable)

    def codegen(context, builder, signature, args):
        src = make_array(signature.args[0])(context, builder, args[0])
        out = make_array(view)(context, builder)
        off, rows, cols = (
            _intp(context, builder, v, t) for v, t in zip(args[1:], signature.args[1:], strict=True)
        )
        populate_array(
            out,
            data=builder.gep(src.data, [off]),
            shape=(rows, cols),
            strides=(builder.mul(cols, src.itemsize), src.itemsize),
            itemsize=src.itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return view(buf, offset, m, n), codegen


@intrinsic
def vector(typingctx, buf, offset, n):
    """``buf[offset:offset + n]``; buf 1-D C-contiguous."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        return None
    view = types.Array(buf.dtype, 1, "C", readonly=not buf.mutable)

    def codegen(context, builder, signature, args):
        src = make_array(signature.args[0])(context, builder, args[0])
        out = make_array(view)(context, builder)
        off = _intp(context, builder, args[1], signature.args[1])
        populate_array(
            out,
            data=builder.gep(src.data, [off]),
            shape=(_intp(context, builder, args[2], signature.args[2]),),
            strides=(src.itemsize,),
            itemsize=src.itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return view(buf, offset, n), codegen


@intrinsic
def row_range(typingctx, x, start, m):
    """``x[start:start + m]`` of a 2-D array of any layout (same layout)."""
    if not (isinstance(x, types.Array) and x.ndim == 2):
        return None
    view = types.Array(x.dtype, 2, x.layout, readonly=not x.mutable)

    def codegen(context, builder, signature, args):
        src = make_array(signature.args[0])(context, builder, args[0])
        out = make_array(view)(context, builder)
        first = _intp(context, builder, args[1], signature.args[1])
        shape = cgutils.unpack_tuple(builder, src.shape, 2)
        strides = cgutils.unpack_tuple(builder, src.strides, 2)
        data = builder.gep(
            builder.bitcast(src.data, cgutils.voidptr_t), [builder.mul(first, strides[0])]
        )
        populate_array(
            out,
            data=builder.bitcast(data, src.data.type),
            shape=(_intp(context, builder, args[2], signature.args[2]), shape[1]),
            strides=strides,
            itemsize=src.itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return view(x, start, m), codegen


@intrinsic
def flat(typingctx, z):
    """All elements of z, a C-contiguous 2-D array (not checked), as a 1-D view."""
    if not (isinstance(z, types.Array) and z.ndim == 2):
        return None
    view = types.Array(z.dtype, 1, "C", readonly=not z.mutable)

    def codegen(context, builder, signature, args):
        src = make_array(signature.args[0])(context, builder, args[0])
        out = make_array(view)(context, builder)
        populate_array(
            out,
            data=src.data,
            shape=(src.nitems,),
            strides=(src.itemsize,),
            itemsize=src.itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return view(z), codegen
