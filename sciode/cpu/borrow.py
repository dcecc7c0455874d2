"""Borrowed array views: arrays without a reference count, for system tuples.

A system tuple (``sciode.cpu.systems``) is handed to inlined helpers several
times per stage.  When an inlined helper has more than one basic block, Numba
increfs and decrefs every array in the tuple at each use (its reference-count
pruning works within a basic block), ~5-10 ns of atomic work per array.
Views built with ``numba.carray`` from the data pointer carry no meminfo, so
those operations become no-ops: measured 68 -> 26 ns per model evaluation on
Lorenz (numba 0.68).  The stiff loops borrow all their arrays the same way;
the explicit loop's stepping core (``explicit.rk_steps``) is compiled without
reference counting at all.

Safety: a borrowed view does not keep its array alive.  Borrow only arrays
that outlive every use of the view: entry-point arguments, or locals that the
entry point uses again after the loop (``keep_alive``).
"""

import numba as nb
from numba import types
from numba.extending import intrinsic


@intrinsic
def _data_pointer(typingctx, a):
    """The data pointer of the array ``a``, typed ``CPointer(a.dtype)`` (no reference taken)."""
    sig = types.CPointer(a.dtype)(a)

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return sig, codegen


@nb.njit(cache=True, nogil=True, inline="always")
def borrow1(a):
    """A view of the 1-D C-contiguous ``a`` without a reference count."""
    return nb.carray(_data_pointer(a), a.shape[0])


@nb.njit(cache=True, nogil=True, inline="always")
def borrow2(a):
    """A view of the 2-D C-contiguous ``a`` without a reference count."""
    return nb.carray(_data_pointer(a), (a.shape[0], a.shape[1]))


@nb.njit(cache=True, nogil=True, inline="always")
def borrow3(a):
    """A view of the 3-D C-contiguous ``a`` without a reference count."""
    return nb.carray(_data_pointer(a), (a.shape[0], a.shape[1], a.shape[2]))


@nb.njit(cache=True, nogil=True)
def keep_alive(*arrays):
    """Use each array once more, so Numba keeps it alive until this point."""
    acc = 0
    for a in arrays:
        acc += a.size
    return acc
