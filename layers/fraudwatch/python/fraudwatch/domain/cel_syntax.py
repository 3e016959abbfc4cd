"""CEL's syntax, as far as domain/conditions.py translates it: tokens, a syntax tree, a parser.

The parser is our own (CEL's grammar from the spec, recursive descent): cel-python's lark grammar would
put lark and cel-python (which imports re2 and pendulum) in the layer, and building its LALR parser took
225 ms (plus 133 ms to import lark) on the bench machine, at the first rules document of each
container. It parses only what the CEL library has compiled; syntax it does not know raises
Untranslatable, and the library evaluates that condition.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


class Untranslatable(Exception):
    """A condition (or a part of it) outside the translated subset: evaluated per record."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: bool | int | float | str


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional:
    test: Node
    then: Node
    otherwise: Node


Node = Literal | Name | Select | Call | ListOf | Unary | Binary | Conditional

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
    |(?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
    |(?P<uint>(?:0x[0-9a-fA-F]+|\d+)[uU])
    |(?P<int>0x[0-9a-fA-F]+|\d+)
    |(?P<string>'[^'\\\n]*'|"[^"\\\n]*")
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>\|\||&&|==|!=|<=|>=|[<>!+\-*/%?:()\[\]{}.,])
    """,
    re.VERBOSE,
)
_RELATIONS = ("==", "!=", "<", "<=", ">", ">=", "in")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.lastgroup is None:
            raise Untranslatable(f"character {text[position]!r} at {position + 1} (escapes, bytes, ...)")
        position = found.end()
        if found.lastgroup == "uint":
            raise Untranslatable("unsigned integers")
        if found.lastgroup != "space":
            kind = found.lastgroup
            if kind == "ident" and found.group() in ("in", "true", "false", "null"):
                kind = "op" if found.group() == "in" else "keyword"
            tokens.append((kind, found.group()))
    return tokens


class _Parser:
    """CEL's grammar (cel-spec, langdef.md: Expr, ConditionalOr, ..., Member, Primary), recursive descent.

    It only parses what the CEL library has already compiled, so its errors mean "outside the subset".
    """

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def parse(self) -> Node:
        node = self.expr()
        if self.at != len(self.tokens):
            raise Untranslatable(f"unexpected {self.tokens[self.at][1]!r}")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens) or (expected is not None and self.tokens[self.at][1] != expected):
            raise Untranslatable(f"expected {expected or 'more'}")
        self.at += 1
        return self.tokens[self.at - 1]

    def expr(self) -> Node:  # Expr = ConditionalOr ["?" ConditionalOr ":" Expr]
        test = self.left_assoc(("||",), self.conditional_and)
        if self.peek() != "?":
            return test
        self.take("?")
        then = self.left_assoc(("||",), self.conditional_and)
        self.take(":")
        return Conditional(test, then, self.expr())

    def conditional_and(self) -> Node:
        return self.left_assoc(("&&",), self.relation)

    def relation(self) -> Node:
        return self.left_assoc(_RELATIONS, self.addition)

    def addition(self) -> Node:
        return self.left_assoc(("+", "-"), self.multiplication)

    def multiplication(self) -> Node:
        return self.left_assoc(("*", "/", "%"), self.unary)

    def left_assoc(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.peek() in ops:
            op = self.take()[1]
            node = Binary(op, node, operand())
        return node

    def unary(self) -> Node:  # Unary = Member | "!" {"!"} Member | "-" {"-"} Member
        if self.peek() in ("!", "-"):
            op = self.take()[1]
            return Unary(op, self.unary())
        return self.member()

    def member(self) -> Node:  # Member = Primary | Member "." SELECTOR ["(" ...] | Member "[" Expr "]"
        node = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == "[":
                raise Untranslatable("indexing")
            kind, field = self.take()
            if kind != "ident":
                raise Untranslatable(f"selecting {field!r}")
            if self.peek() == "(":
                raise Untranslatable(f"the method {field}()")
            node = Select(node, field)
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "ident":
            if self.peek() != "(":
                return Name(text)
            self.take("(")
            return Call(text, self.items(")"))
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        if text == "[":
            return ListOf(self.items("]"))
        if kind == "keyword" and text in ("true", "false"):
            return Literal(text == "true")
        if kind == "double":
            return Literal(float(text))
        if kind == "int":
            return Literal(int(text, 16) if text.lower().startswith("0x") else int(text))
        if kind == "string":
            return Literal(text[1:-1])
        raise Untranslatable(f"{text!r}")

    def items(self, closing: str) -> tuple[Node, ...]:
        items: list[Node] = []
        while self.peek() != closing:
            items.append(self.expr())
            if self.peek() != closing:
                self.take(",")
        self.take(closing)
        return tuple(items)


def parse(condition: str) -> Node:
    """A condition's syntax tree; Untranslatable if it uses syntax outside the subset."""
    return _Parser(condition).parse()
