"""GELU: the FFN's bias Add and its GELU -> one com.microsoft op.

    h ─Add(bias)─x─┬─(x / sqrt 2)──Erf──(1 + .)──┐                          erf form
                   └─────────────────────────────Mul─(0.5 *)─y
    h ─Add(bias)─x─┬─(c * (x + 0.044715 x^3))──Tanh──(1 + .)──┐           tanh form
                   └──────────────────────────────────────────Mul─(0.5 *)─y

Becomes:
    erf form   (hidden_act gelu, gelu_python)                          -> BiasGelu(h, bias)
    tanh form  (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_accurate) -> FastGelu(h, bias)

both in domain com.microsoft. FastGelu is ONNX Runtime's tanh GELU, not an approximation of the erf
one: the two forms differ by up to ~5e-4 per activation, more than the fp32 parity tolerance
absorbs over 12 layers, so each form gets its own op.

The exporters write each form in several operand orders (dynamo's 0.5 * x * (...), TorchScript's
x * (...) * 0.5, gelu_python's x * 0.5 * (...), gelu_fast's c * x * (1 + 0.044715 x^2)). onnxscript's
rules match the two common erf orders; the rest is matched by evaluation, as the mask and position
rules are (probe.py): around each Erf or Tanh, the elementwise subgraph from the one tensor x it
reads to the value y where it closes is computed on a grid of x in numpy, and it is replaced when
y(x) is the erf or the tanh GELU to GELU_MATCH_ATOL. Refused, with the reason: a subgraph that
reads a second tensor, whose inner values are used elsewhere, or whose numbers are not a GELU
(the pooler's lone Tanh is not reported: it is no GELU candidate at all).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import _ir_utils, pattern
from onnxscript.rewriter.ort_fusions.bias_gelu import bias_gelu_rules
from onnxscript.rewriter.ort_fusions.erfgelu import rules as erf_gelu_dynamo_order_rules
from onnxscript.rewriter.ort_fusions.gelu import gelu_rules as gelu_torchscript_order_rules

from bert14.optimize.graph import MS_DOMAIN, constant, replace_value
from bert14.optimize.passes import PassResult, Refusal, apply_rules

# The grid covers where GELU's two forms differ (|x| < 6); fp32 constants in the graph put the
# evaluated subgraph within ~1e-6 of the exact form there, while the erf and tanh forms differ by
# up to ~5e-4, so this tolerance tells them apart with room on both sides.
GELU_MATCH_ATOL = 1e-5
_GRID = np.linspace(-8.0, 8.0, 641)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_FORMS = {
    "Gelu": lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))),
    "FastGelu": lambda x: 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))),
}
_ELEMENTWISE = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Pow": np.power,
    "Neg": np.negative,
    "Sqrt": np.sqrt,
    "Tanh": np.tanh,
    "Erf": np.vectorize(math.erf),
}
GELU_OPS = ("BiasGelu", "FastGelu")
# GELU closes within a few elementwise ops after its Erf/Tanh: (1 + .), the Mul by x, the 0.5.
MAX_GELU_STEPS = 6


def fuse_gelu(model: ir.Model, debug: bool = False) -> PassResult:
    """Count: bias-fused GELU nodes made; refused: GELU-shaped candidates that were not GELU."""
    # Two rule sets for the two erf orders most exports write: 0.5 * x * (1 + erf(x / sqrt 2))
    # (dynamo) and x * (1 + erf(x / sqrt 2)) * 0.5 (TorchScript); the second also has a tanh rule.
    # Their count is of Gelu nodes, an intermediate: what counts is the biased op made below.
    unbiased = apply_rules(model, erf_gelu_dynamo_order_rules, debug)
    unbiased += apply_rules(model, gelu_torchscript_order_rules, debug)
    by_evaluation = PassResult(0, tuple(fuse_gelu_by_evaluation(model)))
    biased = apply_rules(model, bias_gelu_rules, debug) + apply_rules(model, FAST_GELU_BIAS_RULES, debug)
    return PassResult(biased.count, unbiased.refused + by_evaluation.refused + biased.refused)


def gelu_counts(model: ir.Model) -> dict[str, int]:
    """{"BiasGelu": n} or, for a tanh-GELU model, {"FastGelu": n}: the FFN activations that carry
    their bias. A FastGelu without one does not count: the bias Add beside it was not fused."""
    biased = {op: 0 for op in GELU_OPS}
    for node in model.graph:
        if node.domain == MS_DOMAIN and node.op_type in GELU_OPS and len(node.inputs) > 1 and node.inputs[1]:
            biased[node.op_type] += 1
    tanh = any(node.op_type == "FastGelu" and node.domain == MS_DOMAIN for node in model.graph)
    return {"FastGelu": biased["FastGelu"]} if tanh and not biased["BiasGelu"] else {"BiasGelu": biased["BiasGelu"]}


def fuse_gelu_by_evaluation(model: ir.Model) -> list[str]:
    reasons = []
    for node in [n for n in model.graph if n.op_type in ("Erf", "Tanh") and n.domain in ("", "ai.onnx")]:
        if node.graph is None:  # removed by an earlier replacement
            continue
        try:
            found = _region(node)
        except Refusal as why:
            reasons.append(f"{node.name or node.op_type}: {why}")
            continue
        if found is None:
            continue  # not GELU-shaped (e.g. the pooler's Tanh, which feeds a Gemm)
        x, ends = found
        problem: Refusal | None = None
        for y in ends:  # the closing Mul, then each constant scale after it (x * (1 + erf) * 0.5)
            members = _between(x, y)
            try:
                _check_closure(x, y, members)
                op = _identify(x, y, members)
            except Refusal as why:
                problem = why
                continue
            _replace(model, op, x, y, members)
            break
        else:
            reasons.append(f"{node.name or node.op_type}: {problem}")
    return reasons


def _ancestors(value: ir.Value) -> list[ir.Value]:
    """`value` and the values it is computed from through elementwise ops, nearest first."""
    order, frontier = [value], [value]
    while frontier:
        nxt = []
        for current in frontier:
            node = current.producer()
            if node is None or node.op_type not in _ELEMENTWISE or node.domain not in ("", "ai.onnx"):
                continue
            for value_in in node.inputs:
                if value_in is not None and constant(value_in) is None and value_in not in order:
                    order.append(value_in)
                    nxt.append(value_in)
        frontier = nxt
    return order


def _region(node: ir.Node) -> tuple[ir.Value, list[ir.Value]] | None:
    """(x, the values y where the GELU may close), or None when the node is not in a GELU-shaped
    subgraph: its output must reach a Mul whose second operand is computed from the same x.
    The candidates are that Mul's output and each constant-operand step after it. A Refusal
    when the chain is cut before that Mul by a value something else reads too."""
    inner = set(_ancestors(node.inputs[0]))
    value, x, ends = node.outputs[0], None, []
    for _ in range(MAX_GELU_STEPS):
        if x is None and (len(list(value.consumers())) > 1 or value.is_graph_output()):
            raise Refusal(f"{value.name} is read outside the GELU")
        step = _only_elementwise_consumer(value)
        if step is None:
            break
        others = [v for v in step.inputs if v is not None and v is not value and constant(v) is None]
        if x is None and step.op_type == "Mul" and len(others) == 1:
            x = next((v for v in _ancestors(others[0]) if v in inner), None)
            if x is None:
                return None
        elif others:
            break
        value = step.outputs[0]
        if x is not None:
            ends.append(value)
    return (x, ends) if x is not None else None


def _only_elementwise_consumer(value: ir.Value) -> ir.Node | None:
    consumers = list(value.consumers())
    if len(consumers) != 1 or value.is_graph_output():
        return None
    node = consumers[0]
    return node if node.op_type in _ELEMENTWISE and node.domain in ("", "ai.onnx") else None


def _between(x: ir.Value, y: ir.Value) -> list[ir.Node]:
    """The elementwise nodes on paths from x back from y, in graph order (the walk stops at x and
    at anything not elementwise, which the closure check then names)."""
    reach: set[int] = set()
    stack = [y.producer()]
    members = []
    while stack:
        node = stack.pop()
        if node is None or id(node) in reach or node.op_type not in _ELEMENTWISE:
            continue
        reach.add(id(node))
        members.append(node)
        stack.extend(v.producer() for v in node.inputs if v is not None and v is not x and constant(v) is None)
    graph = y.producer().graph
    order = {id(n): i for i, n in enumerate(graph)} if graph is not None else {}
    return sorted(members, key=lambda n: order.get(id(n), 0))


def _check_closure(x: ir.Value, y: ir.Value, members: list[ir.Node]) -> None:
    """A Refusal unless the nodes from x to y are elementwise and read and feed nothing outside."""
    produced = {id(v) for n in members for v in n.outputs}
    for node in members:
        if node.op_type not in _ELEMENTWISE:
            raise Refusal(f"{node.op_type} {node.name!r} between {x.name} and {y.name} is not elementwise")
        for value in node.inputs:
            if value is not None and value is not x and constant(value) is None and id(value) not in produced:
                raise Refusal(f"reads {value.name} besides {x.name}")
        for value in node.outputs:
            if value is not y and any(c not in members for c in value.consumers()):
                raise Refusal(f"{value.name} is used outside the GELU")
            if value is not y and value.is_graph_output():
                raise Refusal(f"{value.name} is a graph output")


def _identify(x: ir.Value, y: ir.Value, members: list[ir.Node]) -> str:
    """The op the subgraph computes (Gelu or FastGelu), evaluated on a grid, or a Refusal."""
    values: dict[int, np.ndarray] = {id(x): _GRID}
    with np.errstate(all="ignore"):
        for node in members:
            args = [values[id(v)] if id(v) in values else constant(v).astype(np.float64) for v in node.inputs]
            values[id(node.outputs[0])] = _ELEMENTWISE[node.op_type](*args)
    got = np.broadcast_to(values[id(y)], _GRID.shape)
    errors = {op: float(np.max(np.abs(got - form(_GRID)))) for op, form in _FORMS.items()}
    best = min(errors, key=errors.get)
    if errors[best] <= GELU_MATCH_ATOL:
        return best
    raise Refusal(f"not a GELU: max error {errors['Gelu']:.1e} from the erf form, {errors['FastGelu']:.1e} from tanh")


def _replace(model: ir.Model, op: str, x: ir.Value, y: ir.Value, members: list[ir.Node]) -> None:
    anchor = y.producer()
    node = ir.node(op, [x], domain=MS_DOMAIN, name=f"{anchor.name or 'gelu'}.{op}")
    model.graph.insert_before(anchor, node)
    node.outputs[0].shape, node.outputs[0].type = y.shape, y.type
    replace_value(y, node.outputs[0])
    model.graph.remove(members, safe=True)


class FastGeluBiasFusion(pattern.RewriteRuleClassBase):
    """FastGelu(Add(h, bias)) -> FastGelu(h, bias): ONNX Runtime's FastGelu takes the bias."""

    def pattern(self, op, input, bias):
        return op.FastGelu(op.Add(input, bias), _domain=MS_DOMAIN)

    def check(self, op, input, bias, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if not _ir_utils.has_rank(bias, 1) or constant(bias) is None:
            return result.fail("bias is not a constant 1-D tensor", bias)
        return result

    def rewrite(self, op, input, bias, **_):
        return op.FastGelu(input, bias, _domain=MS_DOMAIN)


FAST_GELU_BIAS_RULES = pattern.RewriteRuleSet([*FastGeluBiasFusion.rule().commute()])
