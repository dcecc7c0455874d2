"""Generated kernels compiled straight to machine code with llvmlite.

A generated kernel is a few hundred to a few thousand lines of straight
arithmetic (``out[3] = p[0]*y[1] - ...``), with loops where rows repeat
(``rolling.py``).  Numba compiles it like any Python function: it types and
lowers every operation through its generic machinery, about 25 ms per line on
this project's 2-core machine (measured: 500 lines in 12.6 s, 2,000 in 81 s;
splitting into chunks saves little, since the cost is per operation).  That
is most of a new model's first gradient (Lotka--Volterra: 0.5 of 1.0 s; the
PEtab model Boehm: 3 of 4.4 s).

The kernels use a small, fixed part of Python, which this module translates
to LLVM IR itself, from the generated module's syntax tree (``ast``: the
source is parsed, never executed here), and compiles with llvmlite's public
API in milliseconds:

- statements: ``name = expr`` (each name assigned once), ``out[i, j] = expr``,
  ``out[i] += expr``, ``out[:] = 0.0``, ``row = M[k]`` (a row view),
  ``for i in range(...)`` and ``return``;
- expressions: float and integer constants, ``+ - * /``, ``**`` (an integer
  constant exponent by Numba's own unrolled multiplication, anything else by
  ``llvm.pow``), unary minus, ``math`` functions (the same intrinsic or C
  library call that Numba makes for each), ``abs``, ``min``, ``max``, ``a if c else b`` with
  comparisons, ``and``/``or``, and array reads at integer index expressions,
  ``S.shape[1]``.

and, for the matrix-form kernels of ``structured.py``, temporaries
``np.empty``/``np.zeros`` of constant shape (on the stack: no allocation per
call), module tables ``np.array([...], dtype=np.int64)`` and row copies
``out[k, :] = v``.

Anything else raises ``Unsupported`` and that kernel is compiled by Numba, as
before.  The IR evaluates every operation in the order Python would, without
fast-math flags, except the sums that loops accumulate (``_acc += e``), which
carry ``reassoc`` as every operation of Numba's kernels does, so that LLVM
may run them in SIMD lanes: a kernel without such a loop is what Python's
floats give and what Numba gives for its source without ``fastmath``, bit
for bit; one with them equals it to rounding (``tests/test_native_kernels.py``).

The function has the C-callable signature Numba's loops call a first-class
function through (``_numba_compat.direct_kernel_abi``: array arguments as
Numba's array structs, by value); a second function with plain pointer and
size arguments serves calls from Python through ``ctypes``.  The object code
is kept in the kernel cache (``ObjectStore``: ``native/<key>.o``, checked
against its digest before it is loaded), so a later process loads a model's
kernels in milliseconds instead of compiling them again.
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import math
import threading

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir

F64 = ir.DoubleType()
I64 = ir.IntType(64)
I1 = ir.IntType(1)

#: ``math`` functions lowered to an LLVM intrinsic, as Numba lowers them
#: (``numba.cpython.mathimpl``: ``unary_math_intr``).
INTRINSICS = {"exp": "llvm.exp", "log": "llvm.log", "log10": "llvm.log10", "sin": "llvm.sin",
              "cos": "llvm.cos", "fabs": "llvm.fabs", "exp2": "llvm.exp2"}
#: ``math`` functions Numba calls in the C library (``unary_math_extern``).
EXTERNS = {"tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
           "log1p", "expm1", "erf", "erfc", "sqrt", "lgamma"}
#: Two-argument ``math`` functions: (intrinsic or C name, is intrinsic).
BINARY = {"copysign": ("llvm.copysign", True), "pow": ("llvm.pow", True), "atan2": ("atan2", False)}


#: Temporaries (``np.empty``/``np.zeros``) of one kernel live on the stack up to
#: this many floats (128 KiB); a kernel needing more is compiled by Numba.
MAX_STACK_FLOATS = 16384
#: ``math`` constants the printer emits (``math.pi``, ``math.e``).
MATH_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


class Unsupported(Exception):
    """The kernel uses Python outside what this module translates (Numba compiles it)."""


class _Array:
    """An array argument or a row view: its data pointer and shape (``i64`` values)."""

    def __init__(self, data, shape):
        self.data = data
        self.shape = list(shape)


def _fail(node, why: str):
    try:
        text = ast.unparse(node)[:80]
    except RecursionError:
        text = type(node).__name__
    raise Unsupported(f"{why} (line {getattr(node, 'lineno', '?')}: {text})")


class _FunctionEmitter:
    """Emit one kernel's body into ``fn`` (see the module docstring for the subset)."""

    def __init__(self, fn: ir.Function, tree: ast.FunctionDef, consts: dict, abi):
        self.fn = fn
        self.module = fn.module
        # stack slots go in the entry block (once per call, whatever loop they are
        # declared in); the code starts in the next block (``finish`` links them)
        self.allocas = ir.IRBuilder(fn.append_basic_block("entry"))
        self.start = fn.append_basic_block("start")
        self.builder = ir.IRBuilder(self.start)
        self.data_type = abi.data_type
        self.stack_floats = 0
        self.depth = 0  # loops around the statement being emitted
        b = self.builder
        args = {}  # the kernel's arguments: floats, and arrays as data pointer and shape
        for arg, value, nd in zip(tree.args.args, fn.args, abi.ndims):
            args[arg.arg] = value if nd is None else _Array(
                b.extract_value(value, abi.data_field), [b.extract_value(value, [abi.shape_field, k]) for k in range(nd)])
        self.scopes = [args]
        self.consts = consts
        self.bound_to: dict = {}  # name -> the source of the value it was first bound to
        # accumulators (``_acc = 0.0; for ...: _acc += x``) live in memory, which
        # LLVM's mem2reg turns back into registers
        self.mutable = {n.target.id for n in ast.walk(tree)
                        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)}
        self.slots = {name: self.allocas.alloca(F64, name=name) for name in sorted(self.mutable)}
        for slot in self.slots.values():  # never undefined (Python would raise): NaN
            self.builder.store(ir.Constant(F64, math.nan), slot)
        self.assigned: set = set()
        # arrays the kernel writes (and the row views bound to them): a value read
        # from one may change between two bindings of a name
        self.written = {t.value.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign))
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)}
        self.written |= {n.targets[0].id for n in ast.walk(tree)
                         if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
                         and isinstance(n.value, ast.Subscript) and isinstance(n.value.value, ast.Name)
                         and n.value.value.id in self.written}

    def finish(self):
        """Close the entry block (its stack slots) with a jump to the code."""
        self.allocas.branch(self.start)

    def temporary(self, node: ast.Call):
        """``np.empty(shape)`` / ``np.zeros(shape)`` with constant integer extents:
        a C-contiguous float64 array on the stack (zeroed here for ``zeros``)."""
        if node.keywords or len(node.args) != 1:
            _fail(node, "np.empty/np.zeros take one shape argument")
        shape_node = node.args[0]
        elts = shape_node.elts if isinstance(shape_node, ast.Tuple) else [shape_node]
        extents = []
        for e in elts:
            if not (isinstance(e, ast.Constant) and isinstance(e.value, int) and not isinstance(e.value, bool)
                    and e.value >= 0):
                _fail(node, "a temporary's shape must be constant integers")
            extents.append(e.value)
        size = max(1, math.prod(extents))
        self.stack_floats += size
        if self.stack_floats > MAX_STACK_FLOATS:
            _fail(node, "temporaries too large for the stack")
        slot = self.allocas.alloca(ir.ArrayType(F64, size))
        arr = _Array(self.builder.bitcast(slot, self.data_type), [ir.Constant(I64, e) for e in extents])
        if node.func.attr == "zeros":
            self.fill_zero(arr)
        return arr

    # --- names ---------------------------------------------------------------------------
    def lookup(self, node: ast.Name):
        if node.id in self.mutable:
            if node.id not in self.assigned:
                _fail(node, f"`{node.id}` is read before it is assigned")
            return self.builder.load(self.slots[node.id], typ=F64)
        for scope in reversed(self.scopes):
            if node.id in scope:
                return scope[node.id]
        if node.id in self.consts:
            v = self.consts[node.id]
            if isinstance(v, tuple):
                _fail(node, f"module array `{node.id}` used as a number")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                _fail(node, f"module constant `{node.id}` is not a number")
            return ir.Constant(I64, v) if isinstance(v, int) else ir.Constant(F64, float(v))
        _fail(node, f"unknown name `{node.id}`")

    def bind(self, name: str, value, node: ast.Assign):
        if name in self.mutable:
            if value.type == I1:
                _fail(node, "a truth value in an accumulator")
            value = self.as_float(value)
            self.builder.store(value, self.slots[name])
            self.assigned.add(name)
            return
        # Generated kernels carry no value across loop iterations or out of a
        # loop; a name bound again is the same read again (``_y3 = y[3]`` at
        # the top of a loop body and after it), so each binding is its own
        # SSA value in its scope.  Anything else is not translated.
        first = self.bound_to.setdefault(name, node.value)
        if first is not node.value and (ast.dump(first) != ast.dump(node.value) or any(
                isinstance(n, ast.Name) and n.id in self.written for n in ast.walk(node.value))):
            _fail(node, f"`{name}` is bound to two different values")
        self.scopes[-1][name] = value

    # --- statements ----------------------------------------------------------------------
    def body(self, stmts):
        for s in stmts:
            if self.builder.block.is_terminated:
                _fail(s, "code after return")
            self.statement(s)

    def statement(self, s):
        b = self.builder
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            return  # the docstring
        if isinstance(s, ast.Return):
            if s.value is not None:
                _fail(s, "a kernel returns nothing")
            b.ret(ir.Constant(self.fn.function_type.return_type, None))
            return
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1:
                _fail(s, "chained assignment")
            target = s.targets[0]
            if isinstance(target, ast.Name):
                v = s.value
                if (isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and isinstance(v.func.value, ast.Name)
                        and v.func.value.id == "np" and v.func.attr in ("empty", "zeros")):
                    if target.id in self.bound_to or any(target.id in sc for sc in self.scopes):
                        _fail(s, f"temporary `{target.id}` is declared twice")
                    self.bound_to[target.id] = v
                    self.scopes[-1][target.id] = self.temporary(v)
                    return
                if isinstance(s.value, ast.Subscript):
                    arr = self.array_of(s.value.value)
                    if arr is not None and len(arr.shape) == 2 and not isinstance(s.value.slice, ast.Tuple):
                        # ``row = M[k]``: a view of row k
                        k = self.integer(s.value.slice)
                        data = self.gep(arr.data, b.mul(k, arr.shape[1]))
                        self.bind(target.id, _Array(data, arr.shape[1:]), s)
                        return
                self.bind(target.id, self.value(s.value), s)
                return
            if isinstance(target, ast.Subscript):
                arr = self.array_of(target.value)
                if arr is None:
                    _fail(s, "assignment into something that is not an array")
                if isinstance(target.slice, ast.Slice):
                    self.fill(arr, target, s.value)
                    return
                sl = target.slice
                if (isinstance(sl, ast.Tuple) and len(sl.elts) == 2 and len(arr.shape) == 2
                        and isinstance(sl.elts[1], ast.Slice) and sl.elts[1].lower is None
                        and sl.elts[1].upper is None and sl.elts[1].step is None):
                    # ``out[k, :] = v``: a row from a 1-d array (no broadcasting)
                    src = self.array_of(s.value)
                    if src is None or len(src.shape) != 1:
                        _fail(s, "a row is assigned from a 1-d array")
                    row = self.gep(arr.data, b.mul(self.integer(sl.elts[0]), arr.shape[1]))
                    self.count_loop(ir.Constant(I64, 0), arr.shape[1], ir.Constant(I64, 1),
                                    lambda i: b.store(b.load(self.gep(src.data, i), typ=F64), self.gep(row, i)))
                    return
                b.store(self.scalar(s.value), self.element(arr, target.slice))
                return
            _fail(s, "unsupported assignment target")
        if isinstance(s, ast.AugAssign):
            if not isinstance(s.op, (ast.Add, ast.Sub)):
                _fail(s, "augmented assignments are += and -=")
            t = s.target
            if isinstance(t, ast.Name) and t.id in self.assigned:  # an accumulator
                ptr = self.slots[t.id]
            elif isinstance(t, ast.Subscript) and self.array_of(t.value) is not None:
                ptr = self.element(self.array_of(t.value), t.slice)
            else:
                _fail(s, "+= and -= go to an array entry or an assigned accumulator")
            old, value = b.load(ptr, typ=F64), self.scalar(s.value)
            # in a loop a reduction, which may be reordered (``reassoc``, as Numba's
            # kernels are compiled) to run in SIMD lanes; elsewhere Python's order
            flags = ("reassoc",) if self.depth > 0 else ()
            b.store(b.fadd(old, value, flags=flags) if isinstance(s.op, ast.Add)
                    else b.fsub(old, value, flags=flags), ptr)
            return
        if isinstance(s, ast.For):
            self.loop(s)
            return
        _fail(s, f"statement {type(s).__name__}")

    def fill(self, arr: _Array, target, value):
        sl = target.slice
        if sl.lower is not None or sl.upper is not None or sl.step is not None:
            _fail(target, "only the whole-array slice `a[:]` is supported")
        if not (isinstance(value, ast.Constant) and value.value == 0.0):
            _fail(value, "only `a[:] = 0.0` is supported")
        self.fill_zero(arr)

    def fill_zero(self, arr: _Array):
        n = arr.shape[0]
        for extent in arr.shape[1:]:
            n = self.builder.mul(n, extent)
        self.count_loop(ir.Constant(I64, 0), n, ir.Constant(I64, 1),
                        lambda i: self.builder.store(ir.Constant(F64, 0.0), self.gep(arr.data, i)))

    def loop(self, s: ast.For):
        if s.orelse or not isinstance(s.target, ast.Name):
            _fail(s, "for-else or a loop target that is not a name")
        it = s.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(it.args) <= 3 and not it.keywords):
            _fail(s, "loops run over range(...)")
        args = [self.integer(a) for a in it.args]
        start, stop, step = ((ir.Constant(I64, 0), args[0], ir.Constant(I64, 1)) if len(args) == 1
                             else (args[0], args[1], args[2] if len(args) == 3 else ir.Constant(I64, 1)))
        if len(args) == 3 and not (isinstance(args[2], ir.Constant) and args[2].constant > 0):
            _fail(s, "a loop step must be a positive integer constant")

        def body(i):
            self.scopes.append({s.target.id: i})
            self.depth += 1
            self.body(s.body)
            self.depth -= 1
            self.scopes.pop()
            if self.builder.block.is_terminated:
                _fail(s, "return inside a loop")

        self.count_loop(start, stop, step, body)

    def count_loop(self, start, stop, step, emit_body):
        """``for i in range(start, stop, step)`` (``step > 0``) with ``emit_body(i)``."""
        b = self.builder
        pre = b.block
        head = self.fn.append_basic_block("loop.head")
        body = self.fn.append_basic_block("loop.body")
        done = self.fn.append_basic_block("loop.end")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        emit_body(i)
        nxt = b.add(i, step)
        i.add_incoming(nxt, b.block)
        b.branch(head)
        b.position_at_end(done)

    # --- arrays --------------------------------------------------------------------------
    def array_of(self, node):
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    v = scope[node.id]
                    return v if isinstance(v, _Array) else None
        return None

    def int_table(self, node):
        """The module's constant integer array ``node`` names (``_NZ_PTR = np.array([...],
        dtype=np.int64)``), as a constant global, or None."""
        if not (isinstance(node, ast.Name) and isinstance(self.consts.get(node.id), tuple)):
            return None
        if any(node.id in scope for scope in self.scopes):
            return None
        g = self.module.globals.get(f"table.{node.id}")
        if g is None:
            values = self.consts[node.id]
            ty = ir.ArrayType(I64, len(values))
            g = ir.GlobalVariable(self.module, ty, name=f"table.{node.id}")
            g.initializer = ir.Constant(ty, list(values))
            g.global_constant = True
            g.linkage = "internal"
        return g

    def gep(self, data, index):
        return self.builder.gep(data, [index], inbounds=True, source_etype=F64)

    def element(self, arr: _Array, index_node):
        idx = index_node.elts if isinstance(index_node, ast.Tuple) else [index_node]
        if len(idx) != len(arr.shape):
            _fail(index_node, f"{len(idx)} indices into a {len(arr.shape)}-d array")
        b = self.builder
        flat = self.integer(idx[0])
        for k in range(1, len(idx)):
            flat = b.add(b.mul(flat, arr.shape[k]), self.integer(idx[k]))
        return self.gep(arr.data, flat)

    # --- expressions ---------------------------------------------------------------------
    def integer(self, node):
        v = self.value(node)
        if v.type != I64:
            _fail(node, "an index must be an integer")
        return v

    def scalar(self, node):
        v = self.value(node)
        if v.type == I1:
            _fail(node, "a truth value used as a number")
        return self.as_float(v)

    def value(self, node):
        b = self.builder
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                _fail(node, "constant that is not a number")
            return ir.Constant(I64, v) if isinstance(v, int) else ir.Constant(F64, v)
        if isinstance(node, ast.Name):
            v = self.lookup(node)
            if isinstance(v, _Array):
                _fail(node, "an array used as a number")
            return v
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                return self.power(node)
            # a long sum ``a + b + c + ...`` is a left-deep chain: walk its spine
            # instead of recursing once per term
            spine = [node]
            while isinstance(spine[-1].left, ast.BinOp) and not isinstance(spine[-1].left.op, ast.Pow):
                spine.append(spine[-1].left)
            acc = self.value(spine[-1].left)
            for n in reversed(spine):
                acc = self.binary(n, acc, self.value(n.right))
            return acc
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
            v = self.value(node.operand)
            if v.type == I1:
                _fail(node, "arithmetic on a truth value")
            if isinstance(node.op, ast.UAdd):
                return v
            if isinstance(node.op, ast.USub):
                return b.neg(v) if v.type == I64 else b.fneg(v)
            _fail(node, f"unary {type(node.op).__name__}")
        if isinstance(node, ast.Subscript):
            base = node.value
            if (isinstance(base, ast.Attribute) and base.attr == "shape"
                    and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
                arr = self.array_of(base.value)
                if arr is None or not 0 <= node.slice.value < len(arr.shape):
                    _fail(node, "shape of something that is not an array")
                return arr.shape[node.slice.value]
            table = self.int_table(base)
            if table is not None:
                ptr = b.gep(table, [ir.Constant(I64, 0), self.integer(node.slice)], inbounds=True,
                            source_etype=table.value_type)
                return b.load(ptr, typ=I64)
            arr = self.array_of(base)
            if arr is None:
                _fail(node, "indexing something that is not an array")
            return b.load(self.element(arr, node.slice), typ=F64)
        if isinstance(node, ast.Call):
            return self.call(node)
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math"
                and node.attr in MATH_CONSTANTS):
            return ir.Constant(F64, MATH_CONSTANTS[node.attr])
        if isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp)
                                                            and isinstance(node.op, ast.Not)):
            return self.condition(node)  # a truth value (CSE names conditions: ``_c1 = (y0 > 0.2)``)
        if isinstance(node, ast.IfExp):
            cond = self.condition(node.test)
            yes, no = self.value(node.body), self.value(node.orelse)
            if yes.type == I1 and no.type == I1:
                return b.select(cond, yes, no)  # a condition chosen by a condition
            if I1 in (yes.type, no.type):
                _fail(node, "a truth value used as a number")
            return b.select(cond, self.as_float(yes), self.as_float(no))
        _fail(node, f"expression {type(node).__name__}")

    def binary(self, node: ast.BinOp, left, right):
        """``left op right`` for the arithmetic operator of ``node`` (not ``**``)."""
        b = self.builder
        if I1 in (left.type, right.type):
            _fail(node, "arithmetic on a truth value")
        if left.type == I64 and right.type == I64 and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            op = {ast.Add: b.add, ast.Sub: b.sub, ast.Mult: b.mul}[type(node.op)]
            return op(left, right)
        ops = {ast.Add: b.fadd, ast.Sub: b.fsub, ast.Mult: b.fmul, ast.Div: b.fdiv}
        if type(node.op) not in ops:
            _fail(node, f"operator {type(node.op).__name__}")
        return ops[type(node.op)](self.as_float(left), self.as_float(right))

    def as_float(self, v):
        if v.type == I1:
            raise Unsupported("a truth value used as a number")
        return self.builder.sitofp(v, F64) if v.type == I64 else v

    def power(self, node):
        exp = node.right
        k = None
        if isinstance(exp, ast.Constant) and isinstance(exp.value, int) and not isinstance(exp.value, bool):
            k = exp.value
        elif (isinstance(exp, ast.UnaryOp) and isinstance(exp.op, ast.USub) and isinstance(exp.operand, ast.Constant)
              and isinstance(exp.operand.value, int) and not isinstance(exp.operand.value, bool)):
            k = -exp.operand.value
        base = self.scalar(node.left)
        b = self.builder
        if k is not None and abs(k) <= 0x10000:
            # Numba's ``static_power_impl``: the same multiplications in the same order
            invert, e = k < 0, abs(k)
            res = ir.Constant(F64, 1.0)
            val = base
            while e != 0:
                if e & 1:
                    res = b.fmul(res, val)
                e >>= 1
                if e:
                    val = b.fmul(val, val)
            return b.fdiv(ir.Constant(F64, 1.0), res) if invert else res
        return b.call(self.intrinsic("llvm.pow", 2), [base, self.scalar(exp)])

    def intrinsic(self, name: str, nargs: int):
        """The float64 variant of the LLVM intrinsic ``name`` taking ``nargs`` floats."""
        return self.module.declare_intrinsic(name, [F64], ir.FunctionType(F64, [F64] * nargs))

    def extern(self, name: str, nargs: int):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(F64, [F64] * nargs), name=name)
        return fn

    def call(self, node: ast.Call):
        if node.keywords:
            _fail(node, "keyword arguments")
        f = node.func
        if isinstance(f, ast.Name) and f.id == "abs" and len(node.args) == 1:
            return self.builder.call(self.intrinsic("llvm.fabs", 1), [self.scalar(node.args[0])])
        if isinstance(f, ast.Name) and f.id in ("min", "max") and node.args:
            # Python's (and Numba's) fold: the next argument replaces the running
            # one when it compares strictly less (min) or greater (max)
            args = [self.scalar(a) for a in node.args]
            acc = args[0]
            for v in args[1:]:
                acc = self.builder.select(self.builder.fcmp_ordered("<" if f.id == "min" else ">", v, acc), v, acc)
            return acc
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "math"):
            _fail(node, "a call of something other than a `math` function or abs")
        args = [self.scalar(a) for a in node.args]
        name = f.attr
        if name in INTRINSICS and len(args) == 1:
            return self.builder.call(self.intrinsic(INTRINSICS[name], 1), args)
        if name in EXTERNS and len(args) == 1:
            return self.builder.call(self.extern(name, 1), args)
        if name in BINARY and len(args) == 2:
            target, is_intrinsic = BINARY[name]
            fn = self.intrinsic(target, 2) if is_intrinsic else self.extern(target, 2)
            return self.builder.call(fn, args)
        _fail(node, f"math.{name} with {len(args)} argument(s)")

    def condition(self, node):
        b = self.builder
        if isinstance(node, ast.BoolOp):
            values = [self.condition(v) for v in node.values]
            out = values[0]
            for v in values[1:]:
                out = b.and_(out, v) if isinstance(node.op, ast.And) else b.or_(out, v)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return b.not_(self.condition(node.operand))
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            ops = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
            op = ops.get(type(node.ops[0]))
            if op is None:
                _fail(node, "comparison")
            left, right = self.value(node.left), self.value(node.comparators[0])
            if I1 in (left.type, right.type):
                _fail(node, "a comparison of truth values")
            if left.type == I64 and right.type == I64:
                return b.icmp_signed(op, left, right)
            left, right = self.as_float(left), self.as_float(right)
            # Python's float comparisons: false with a NaN, except ``!=`` (Numba's too)
            return b.fcmp_unordered(op, left, right) if op == "!=" else b.fcmp_ordered(op, left, right)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return ir.Constant(I1, int(node.value))
        if isinstance(node, (ast.Name, ast.IfExp)):
            v = self.value(node)
            if getattr(v, "type", None) == I1:
                return v
        _fail(node, "condition")


# --- compiling ----------------------------------------------------------------------------------

_LOCK = threading.Lock()
_ENGINE = None
_LOADED: set = set()  # symbols whose object code the engine holds


def _engine():
    global _ENGINE
    if _ENGINE is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_triple(llvm.get_process_triple())
        tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                          features=llvm.get_host_cpu_features().flatten(),
                                          opt=3, codemodel="jitdefault")
        _ENGINE = (llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm), tm)
    return _ENGINE


def _optimize(mod, tm) -> None:
    """LLVM's O3 pipeline (the new pass manager; the legacy one on older llvmlite)."""
    if hasattr(llvm, "create_pass_builder"):
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return
    pmb = llvm.PassManagerBuilder()  # pragma: no cover (llvmlite < 0.44)
    pmb.opt_level = 3
    pm = llvm.ModulePassManager()
    pmb.populate(pm)
    pm.run(mod)


def _int_array(node):
    """The values of ``np.array([ints], dtype=np.int64)``, or None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "array"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "np" and len(node.args) == 1
            and isinstance(node.args[0], ast.List) and len(node.keywords) == 1
            and node.keywords[0].arg == "dtype" and ast.unparse(node.keywords[0].value) == "np.int64"):
        return None
    values = []
    for e in node.args[0].elts:
        if not (isinstance(e, ast.Constant) and isinstance(e.value, int) and not isinstance(e.value, bool)):
            return None
        values.append(e.value)
    return tuple(values)


def parse_module(source: str) -> tuple[dict, dict]:
    """``({name: FunctionDef}, {name: numeric constant})`` of a generated module's source."""
    tree = ast.parse(source)
    functions, consts = {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = node
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and isinstance(node.value, ast.Constant) and isinstance(node.value.value, (int, float))
              and not isinstance(node.value.value, bool)):
            consts[node.targets[0].id] = node.value.value
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and _int_array(node.value) is not None):
            consts[node.targets[0].id] = _int_array(node.value)
    return functions, consts


#: Bumped when the translation changes: cached machine code of older translations is not used.
NATIVE_API = 1


def _target_key() -> str:
    """What machine code depends on besides the source: the translator, LLVM and the CPU."""
    import llvmlite

    return "|".join((f"native={NATIVE_API}", f"llvmlite={llvmlite.__version__}", llvm.get_process_triple(),
                     llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()))


def object_key(source_key: str, name: str, abi) -> str:
    """The cache key of kernel ``name`` of the module whose source hashes to
    ``source_key``, for the argument types of ``abi`` on this machine."""
    text = "\0".join((source_key, name, repr(abi.arg_types), repr(abi.ret_type), _target_key()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def emit_module(tree: ast.FunctionDef, consts: dict, abi, symbol: str) -> ir.Module:
    """The LLVM module of the kernel ``tree``: ``symbol`` with the loops' ABI and
    ``symbol__py`` with plain pointer and size arguments (calls from Python).

    ``abi`` (``_numba_compat.DirectABI``) gives the LLVM types of the
    arguments as Numba's loops pass them (``arg_types``, each array's
    dimensions in ``ndims``, ``None`` for a float), the return type, and
    ``make_array``, which builds an array struct from a data pointer and
    shape for the Python entry.  Raises ``Unsupported``.
    """
    if tree.args.vararg or tree.args.kwarg or tree.args.kwonlyargs or len(tree.args.args) != len(abi.ndims):
        raise Unsupported(f"{tree.name}: arguments do not match the kernel ABI")
    mod = ir.Module(name=symbol)
    mod.triple = llvm.get_process_triple()
    fn = ir.Function(mod, ir.FunctionType(abi.ret_type, abi.arg_types), name=symbol)
    emitter = _FunctionEmitter(fn, tree, consts, abi)
    b = emitter.builder
    emitter.body(tree.body)
    if not b.block.is_terminated:
        b.ret(ir.Constant(abi.ret_type, None))
    emitter.finish()
    py_args = []
    for nd in abi.ndims:
        py_args += [F64] if nd is None else [abi.data_type] + [I64] * nd
    py = ir.Function(mod, ir.FunctionType(ir.VoidType(), py_args), name=f"{symbol}__py")
    pb = ir.IRBuilder(py.append_basic_block("entry"))
    it = iter(py.args)
    call_args = []
    for nd in abi.ndims:
        if nd is None:
            call_args.append(next(it))
        else:
            data = next(it)
            call_args.append(abi.make_array(pb, nd, data, [next(it) for _ in range(nd)]))
    pb.call(fn, call_args)
    pb.ret_void()
    return mod


def compile_function(tree: ast.FunctionDef, consts: dict, abi, source_key: str, store=None):
    """Machine code of the kernel ``tree``: ``(address, python_address)``.

    The symbols are named after ``object_key`` (unique per source, kernel and
    machine: one process holds many models' ``rhs``); ``source_key`` is a
    digest of the module's source.  ``store`` (an
    ``ObjectStore``, or None) keeps the object code on disk, so a later
    process loads it instead of compiling.  Raises ``Unsupported``.
    """
    key = object_key(source_key, tree.name, abi)
    symbol = f"sciode_{key}_{tree.name}"
    with _LOCK:
        engine, tm = _engine()
        if symbol not in _LOADED:
            obj = store.load(key) if store is not None else None
            if obj is None:
                compiled = llvm.parse_assembly(str(emit_module(tree, consts, abi, symbol)))
                compiled.verify()
                _optimize(compiled, tm)
                obj = tm.emit_object(compiled)
                if store is not None:
                    store.save(key, obj)
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            engine.finalize_object()
            _LOADED.add(symbol)
        return engine.get_function_address(symbol), engine.get_function_address(f"{symbol}__py")


class ObjectStore:
    """Object code of native kernels in a directory (the kernel cache's
    ``native/``), each file ``<key>.o`` holding a sha256 of its bytes first:
    a file that does not match (a truncated write, an edit) is compiled again,
    never loaded."""

    def __init__(self, directory):
        self.directory = directory

    def load(self, key: str):
        path = self.directory / f"{key}.o"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        digest, body = data[:32], data[32:]
        if len(data) <= 32 or hashlib.sha256(body).digest() != digest:
            return None
        return body

    def save(self, key: str, obj: bytes) -> None:
        from .cache import private_dir, write_atomic

        private_dir(self.directory)
        write_atomic(self.directory / f"{key}.o", hashlib.sha256(obj).digest() + obj)


def python_caller(address: int, ndims):
    """A Python callable for the ``__py`` entry at ``address``: float64
    arguments and C-contiguous float64 arrays of the given dimensions."""
    argtypes = []
    for nd in ndims:
        argtypes += [ctypes.c_double] if nd is None else [ctypes.c_void_p] + [ctypes.c_int64] * nd
    cfn = ctypes.CFUNCTYPE(None, *argtypes)(address)

    def call(*args):
        if len(args) != len(ndims):
            raise TypeError(f"a kernel takes {len(ndims)} arguments, got {len(args)}")
        flat = []
        for a, nd in zip(args, ndims):
            if nd is None:
                flat.append(float(a))
                continue
            if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.ndim == nd
                    and a.flags.c_contiguous):
                raise TypeError(f"a kernel takes C-contiguous float64 arrays of {nd} dimension(s), "
                                f"got {type(a).__name__} {getattr(a, 'dtype', '')} "
                                f"{getattr(a, 'shape', '')}")
            flat.append(a.ctypes.data)
            flat.extend(a.shape)
        if not args[-1].flags.writeable:
            raise TypeError("a kernel's output array must be writeable")
        cfn(*flat)

    call.cfunc = cfn
    return call
