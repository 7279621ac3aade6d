"""The evaluable tree of a CESQL expression.

Every node has a static result type. Attributes always arrive as strings, so the type of
every subexpression is known when the expression is parsed, and the implicit casts of
spec §3.7 are chosen once, at parse time (see ``Expression`` for the consequences).

Evaluation is total: ``ev`` always returns a value of the node's type and appends any
errors to the list it is given. When an operand referenced a missing attribute, the operator
returns the zero value of its own type without computing anything (spec §3.2), so
``missing / 0`` reports only the missing attribute and ``NOT missing`` is false.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence

from ._functions import Function
from ._like import LikePattern
from ._values import (
    MATH_ERROR,
    MISSING_ATTRIBUTE,
    MISSING_FUNCTION,
    ZERO,
    Caster,
    Errors,
    EvaluationError,
    Value,
    ValueType,
    caster,
    int32,
    missing_since,
)

Attributes = Mapping[str, str]


class Node(ABC):
    __slots__ = ("depth", "type")
    type: ValueType
    depth: int

    @abstractmethod
    def ev(self, attrs: Attributes, errors: Errors) -> Value: ...

    def children(self) -> Sequence[Node]:
        return ()

    def walk(self) -> Iterator[Node]:
        """This node and all below it, without recursion."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children())

    def _set_children_depth(self, *children: Node) -> None:
        self.depth = 1 + max((c.depth for c in children), default=0)


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, value: Value, value_type: ValueType) -> None:
        self.value = value
        self.type = value_type
        self.depth = 1

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        return self.value


class Attribute(Node):
    """An attribute or extension. Missing: False plus a MissingAttributeError (§3.2)."""

    __slots__ = ("message", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.message = f"attribute {name!r} is not present on the event"
        self.type = str
        self.depth = 1

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        value = attrs.get(self.name)
        if value is None:
            errors.append(EvaluationError(MISSING_ATTRIBUTE, self.message))
            return False
        return value


class Exists(Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name
        self.type = bool
        self.depth = 1

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        return self.name in attrs


class Unary(Node):
    """Operators on one operand, cast to ``operand_to``; missing operand gives the zero value."""

    __slots__ = ("cast", "operand")

    def __init__(self, operand: Node, operand_to: ValueType, result: ValueType) -> None:
        self.operand = operand
        self.cast = caster(operand.type, operand_to)
        self.type = result
        self._set_children_depth(operand)

    def children(self) -> Sequence[Node]:
        return (self.operand,)

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        mark = len(errors)
        value = self.operand.ev(attrs, errors)
        if len(errors) != mark and missing_since(errors, mark):
            return ZERO[self.type]
        return self.apply(self.cast(value, errors), errors)

    @abstractmethod
    def apply(self, value: Value, errors: Errors) -> Value: ...


class Not(Unary):
    __slots__ = ()

    def __init__(self, operand: Node) -> None:
        super().__init__(operand, bool, bool)

    def apply(self, value: Value, errors: Errors) -> Value:
        return not value


class Negate(Unary):
    __slots__ = ()

    def __init__(self, operand: Node) -> None:
        super().__init__(operand, int, int)

    def apply(self, value: Value, errors: Errors) -> Value:
        return int32(-int(value), errors, "unary minus")


class Binary(Node):
    """Operators on two operands that are evaluated both (no short-circuit)."""

    __slots__ = ("left", "left_cast", "op", "right", "right_cast")

    def __init__(
        self, op: str, left: Node, right: Node, left_to: ValueType, right_to: ValueType | None
    ) -> None:
        self.op = op
        self.left = left
        self.right = right
        self.left_cast = caster(left.type, left_to)
        self.right_cast = caster(right.type, right_to)
        self._set_children_depth(left, right)

    def children(self) -> Sequence[Node]:
        return (self.left, self.right)

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        mark = len(errors)
        left = self.left.ev(attrs, errors)
        right = self.right.ev(attrs, errors)
        if len(errors) != mark and missing_since(errors, mark):
            return ZERO[self.type]
        return self.apply(self.left_cast(left, errors), self.right_cast(right, errors), errors)

    @abstractmethod
    def apply(self, left: Value, right: Value, errors: Errors) -> Value: ...


class Arithmetic(Binary):
    """``+ - * / %`` on 32-bit integers; overflow and division by zero give 0 + MathError."""

    __slots__ = ()

    def __init__(self, op: str, left: Node, right: Node) -> None:
        super().__init__(op, left, right, int, int)
        self.type = int

    def apply(self, left: Value, right: Value, errors: Errors) -> Value:
        x, y, op = int(left), int(right), self.op
        if op == "+":
            result = x + y
        elif op == "-":
            result = x - y
        elif op == "*":
            result = x * y
        else:
            if y == 0:
                errors.append(EvaluationError(MATH_ERROR, f"division by zero in {x} {op} 0"))
                return 0
            quotient = abs(x) // abs(y)  # rounds towards zero, unlike Python's //
            if (x < 0) != (y < 0):
                quotient = -quotient
            result = quotient if op == "/" else x - y * quotient  # % takes the sign of x
        return int32(result, errors, f"{x} {op} {y}")


class IntegerComparison(Binary):
    """``< <= > >=``: defined on Integers only, so both operands are cast to Integer."""

    __slots__ = ()

    def __init__(self, op: str, left: Node, right: Node) -> None:
        super().__init__(op, left, right, int, int)
        self.type = bool

    def apply(self, left: Value, right: Value, errors: Errors) -> Value:
        x, y, op = int(left), int(right), self.op
        if op == "<":
            return x < y
        if op == "<=":
            return x <= y
        if op == ">":
            return x > y
        return x >= y


class Equality(Binary):
    """``= != <>``: ambiguous, so the left operand is cast to the right one's type (§3.7)."""

    __slots__ = ()

    def __init__(self, op: str, left: Node, right: Node) -> None:
        super().__init__(op, left, right, right.type, None)
        self.type = bool

    def apply(self, left: Value, right: Value, errors: Errors) -> Value:
        return (left == right) is (self.op == "=")


class Xor(Binary):
    __slots__ = ()

    def __init__(self, left: Node, right: Node) -> None:
        super().__init__("XOR", left, right, bool, bool)
        self.type = bool

    def apply(self, left: Value, right: Value, errors: Errors) -> Value:
        return bool(left) is not bool(right)


class ShortCircuit(Node):
    """``AND`` / ``OR`` over two or more operands, evaluated left to right with short-circuit.

    A chain of the same operator is kept flat, so long ``a OR b OR c ...`` lists do not nest.
    """

    __slots__ = ("casts", "is_and", "operands")

    def __init__(self, is_and: bool, operands: Sequence[Node]) -> None:
        self.is_and = is_and
        self.operands = tuple(operands)
        self.casts = tuple(caster(o.type, bool) for o in self.operands)
        self.type = bool
        self._set_children_depth(*self.operands)

    def children(self) -> Sequence[Node]:
        return self.operands

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        stop = not self.is_and  # AND stops at the first false, OR at the first true
        for operand, cast in zip(self.operands, self.casts, strict=True):
            mark = len(errors)
            value = operand.ev(attrs, errors)
            if len(errors) != mark and missing_since(errors, mark):
                return False
            if cast(value, errors) is stop:
                return stop
        return not stop


class Like(Unary):
    __slots__ = ("negated", "pattern")

    def __init__(self, operand: Node, pattern: LikePattern, negated: bool) -> None:
        super().__init__(operand, str, bool)
        self.pattern = pattern
        self.negated = negated

    def apply(self, value: Value, errors: Errors) -> Value:
        return self.pattern.matches(str(value)) is not self.negated


class In(Node):
    """``x IN (y1, ...)``: each element is cast to the type of ``x`` and compared with ``=``."""

    __slots__ = ("casts", "items", "negated", "operand")

    def __init__(self, operand: Node, items: Sequence[Node], negated: bool) -> None:
        self.operand = operand
        self.items = tuple(items)
        self.negated = negated
        self.casts = tuple(caster(item.type, operand.type) for item in self.items)
        self.type = bool
        self._set_children_depth(operand, *self.items)

    def children(self) -> Sequence[Node]:
        return (self.operand, *self.items)

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        mark = len(errors)
        needle = self.operand.ev(attrs, errors)
        if len(errors) != mark and missing_since(errors, mark):
            return False
        for item, cast in zip(self.items, self.casts, strict=True):
            mark = len(errors)
            value = item.ev(attrs, errors)
            if len(errors) != mark and missing_since(errors, mark):
                return False
            if cast(value, errors) == needle:
                return not self.negated
        return self.negated


class Call(Node):
    __slots__ = ("args", "casts", "function")

    def __init__(self, function: Function, args: Sequence[Node]) -> None:
        self.function = function
        self.args = tuple(args)
        self.casts = tuple(caster(a.type, function.param_type(i)) for i, a in enumerate(args))
        self.type = function.returns
        self._set_children_depth(*self.args)

    def children(self) -> Sequence[Node]:
        return self.args

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        mark = len(errors)
        values = [arg.ev(attrs, errors) for arg in self.args]
        if len(errors) != mark and missing_since(errors, mark):
            return ZERO[self.type]
        cast_values = [cast(v, errors) for v, cast in zip(values, self.casts, strict=True)]
        return self.function.impl(cast_values, errors)


class MissingFunction(Node):
    """A call no built-in can dispatch: false plus a MissingFunctionError (§3.5)."""

    __slots__ = ("args", "message", "name")

    def __init__(self, name: str, args: Sequence[Node]) -> None:
        self.name = name
        self.args = tuple(args)
        self.message = f"no function {name} taking {len(self.args)} argument(s)"
        self.type = bool
        self._set_children_depth(*self.args)

    def children(self) -> Sequence[Node]:
        return self.args

    def ev(self, attrs: Attributes, errors: Errors) -> Value:
        errors.append(EvaluationError(MISSING_FUNCTION, self.message))
        return False


__all__ = [
    "Arithmetic",
    "Attribute",
    "Call",
    "Caster",
    "Equality",
    "Exists",
    "In",
    "IntegerComparison",
    "Like",
    "Literal",
    "MissingFunction",
    "Negate",
    "Node",
    "Not",
    "ShortCircuit",
    "Unary",
    "Xor",
]
