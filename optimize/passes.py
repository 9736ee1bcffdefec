"""What every optimizer pass returns, and how an onnxscript rule set is run as one.

    PassResult(count, refused)   count: rewrites made; refused: one readable line per candidate
                                 that looked like the pattern and was not rewritten, and why
    Refusal(message)             how a rule written here refuses a candidate: its match or check
                                 raises it ("NODE: expected ..., found ..."), the pass collects it


A family module (layer_norm.py, attention.py, ...) exposes one function, `fuse_*(model, ...) ->
PassResult`; the pipeline (pipeline.py) is a plain list of them. Rules written here explain their
own refusals; for onnxscript's rules, `apply_rules` asks onnxscript's matching tracer, in a dry
run after the real one (debug only: it costs a second match over the graph), which candidates
came closest and why they failed, so `bert14 optimize --debug` shows them beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchingTracer, MatchStatus

# Candidates reported per onnxscript rule: the closest misses, not every node it looked at.
TRACED_PER_RULE = 3


class Refusal(Exception):
    """A candidate that looked like a rule's pattern and does not match: the message names it and says
    why. Every rule written here refuses this one way; onnxscript's rules refuse through its
    MatchResult.fail, which `apply_rules` reads back (debug) into the same PassResult.refused lines."""


@dataclass(frozen=True)
class PassResult:
    count: int = 0
    refused: tuple[str, ...] = ()

    def __add__(self, other: PassResult) -> PassResult:
        return PassResult(self.count + other.count, self.refused + other.refused)


def traced_refusals(model: ir.Model, rules: pattern.RewriteRuleSet) -> tuple[str, ...]:
    """The closest failed matches of onnxscript `rules` on `model`, without changing it."""
    tracer = MatchingTracer()
    rules.apply_to_model(model, tracer=tracer)  # with a tracer onnxscript only matches, never rewrites
    lines = []
    for rule, matches in tracer.best_matches_map.items():
        for match in matches[:TRACED_PER_RULE]:
            if match.status == MatchStatus.SUCCESS:
                continue
            where = match.root_node.name or match.root_node.op_type
            why = match.match_result.reason or match.status.name.lower().replace("_", " ")
            lines.append(f"onnxscript {rule.name or type(rule).__name__} at {where}: {why}")
    return tuple(lines)


def apply_rules(model: ir.Model, rules: pattern.RewriteRuleSet, debug: bool = False) -> PassResult:
    """Run onnxscript `rules`; with `debug`, also say why the closest candidates were refused."""
    count = rules.apply_to_model(model)
    return PassResult(count, traced_refusals(model, rules) if debug else ())
