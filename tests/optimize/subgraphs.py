"""Tiny hand-built subgraphs (batch 2, sequence 4, hidden 8, 2 heads of 4) for the rule tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

B, S, HIDDEN, HEADS, HEAD = 2, 4, 8, 2, 4
RNG_SEED = 7


def const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def model(nodes, inputs, outputs, initializers, opset: int = 18) -> ir.Model:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    loaded = ir.from_proto(proto)
    from onnx_ir.passes.common import ShapeInferencePass

    ShapeInferencePass()(loaded)
    return loaded


def run(m: ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(ir.to_proto(m).SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def ops(m: ir.Model) -> list[str]:
    return [node.op_type for node in m.graph]


def attention_block(cross: bool = False, causal: bool = False) -> ir.Model:
    """hidden (B, S, 8) + attention_mask (B, S) -> one BERT self-attention, TorchScript-style.

    cross: K and V read a second input (cross-attention, must not fuse).
    causal: the additive mask also hides future keys (not a key-padding mask, must not fuse)."""
    rng = np.random.default_rng(RNG_SEED)
    inits = [
        const("shape4", np.array([0, 0, HEADS, HEAD], np.int64)),
        const("shape3", np.array([0, 0, HIDDEN], np.int64)),
    ]
    nodes = []
    for name in "qkv":
        inits += [
            const(f"W{name}", rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32)),
            const(f"b{name}", rng.normal(size=HIDDEN).astype(np.float32)),
        ]
        source = "memory" if cross and name != "q" else "hidden"
        nodes += [
            helper.make_node("MatMul", [source, f"W{name}"], [f"{name}_mm"]),
            helper.make_node("Add", [f"{name}_mm", f"b{name}"], [f"{name}_proj"]),
            helper.make_node("Reshape", [f"{name}_proj", "shape4"], [f"{name}_heads"]),
        ]
    nodes += [
        helper.make_node("Transpose", ["q_heads"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k_heads"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v_heads"], ["v"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Div", ["scores", "sqrt_d"], ["scaled"]),
        # mask: (1 - m) * -10000, unsqueezed to (B, 1, 1, S)
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask_f"], ["inverted"]),
        helper.make_node("Mul", ["inverted", "big_negative"], ["bias2d"]),
        helper.make_node("Unsqueeze", ["bias2d", "axes12"], ["bias"]),
    ]
    inits += [
        const("sqrt_d", np.array(np.sqrt(HEAD), np.float32)),
        const("one", np.array(1.0, np.float32)),
        const("big_negative", np.array(-10000.0, np.float32)),
        const("axes12", np.array([1, 2], np.int64)),
    ]
    bias = "bias"
    if causal:
        # (S, S) with -10000 above the diagonal, built from the input's length like an export would
        inits += [const("index1", np.array([1], np.int64)), const("k1", np.array(1, np.int64))]
        nodes += [
            helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
            helper.make_node("Gather", ["mask_shape", "index1"], ["seq"], axis=0),
            helper.make_node("Concat", ["seq", "seq"], ["square"], axis=0),
            helper.make_node(
                "ConstantOfShape",
                ["square"],
                ["filled"],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [-10000.0]),
            ),
            helper.make_node("Trilu", ["filled", "k1"], ["causal"], upper=1),
            helper.make_node("Add", ["bias", "causal"], ["bias_causal"]),
        ]
        bias = "bias_causal"
    nodes += [
        helper.make_node("Add", ["scaled", bias], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["context"]),
        helper.make_node("Transpose", ["context"], ["context_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["context_t", "shape3"], ["out"]),
    ]
    inputs = [
        helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    if cross:
        inputs.append(helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]))
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    return model(nodes, inputs, outputs, inits)


def embedding_block(position_offset: int = 0, fourth: str | None = None) -> ir.Model:
    """input_ids + token_type_ids -> word + type + position embeddings -> LayerNorm. `fourth` adds a
    fourth addend: "task_row" ERNIE's task type 0 for every token (a Gather of zeros shaped like the
    ids), "second_positions" another table gathered by the positions (varies by token too)."""
    rng = np.random.default_rng(RNG_SEED)
    inits = [
        const("word", rng.normal(size=(50, HIDDEN)).astype(np.float32)),
        const("type", rng.normal(size=(2, HIDDEN)).astype(np.float32)),
        const("pos", rng.normal(size=(16, HIDDEN)).astype(np.float32)),
        const("gamma", rng.normal(size=HIDDEN).astype(np.float32)),
        const("beta", rng.normal(size=HIDDEN).astype(np.float32)),
        const("start", np.array(position_offset, np.int64)),
        const("step", np.array(1, np.int64)),
        const("index1", np.array(1, np.int64)),
        const("axes0", np.array([0], np.int64)),
    ]
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", "index1"], ["seq_len"], axis=0),
        helper.make_node("Add", ["seq_len", "start"], ["stop"]),
        helper.make_node("Range", ["start", "stop", "step"], ["positions1d"]),
        helper.make_node("Unsqueeze", ["positions1d", "axes0"], ["positions"]),
        helper.make_node("Gather", ["word", "input_ids"], ["w"]),
        helper.make_node("Gather", ["type", "token_type_ids"], ["t"]),
        helper.make_node("Gather", ["pos", "positions"], ["p"]),
        helper.make_node("Add", ["w", "t"], ["wt"]),
        helper.make_node("Add", ["wt", "p"], ["summed"]),
    ]
    if fourth == "task_row":
        inits.append(const("task", rng.normal(size=(3, HIDDEN)).astype(np.float32)))
        nodes += [
            helper.make_node(
                "ConstantOfShape",
                ["ids_shape"],
                ["task_ids"],
                value=helper.make_tensor("z", TensorProto.INT64, [1], [0]),
            ),
            helper.make_node("Gather", ["task", "task_ids"], ["k"]),
        ]
    elif fourth == "second_positions":
        inits.append(const("pos2", rng.normal(size=(16, HIDDEN)).astype(np.float32)))
        nodes.append(helper.make_node("Gather", ["pos2", "positions"], ["k"]))
    if fourth is not None:
        nodes.append(helper.make_node("Add", ["summed", "k"], ["summed4"]))
    last = "summed4" if fourth is not None else "summed"
    nodes.append(helper.make_node("LayerNormalization", [last, "gamma", "beta"], ["out"], axis=-1, epsilon=1e-12))
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    return model(nodes, inputs, outputs, inits)


def decomposed_layer_norm(axis: int = -1) -> ir.Model:
    rng = np.random.default_rng(RNG_SEED)
    inits = [
        const("axes", np.array([axis], np.int64)),
        const("two", np.array(2.0, np.float32)),
        const("eps", np.array(1e-12, np.float32)),
        const("gamma", rng.normal(size=HIDDEN).astype(np.float32)),
        const("beta", rng.normal(size=HIDDEN).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2", "axes"], ["var"], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["d", "std"], ["normed"]),
        helper.make_node("Mul", ["normed", "gamma"], ["scaled"]),
        helper.make_node("Add", ["scaled", "beta"], ["out"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    return model(nodes, inputs, outputs, inits)


def _dense_and_norm(rng: np.random.Generator) -> list[onnx.TensorProto]:
    """W (8, 8), b, gamma, beta: a dense layer and the LayerNorm after it."""
    return [
        const("W", rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32)),
        const("b", rng.normal(size=HIDDEN).astype(np.float32)),
        const("gamma", rng.normal(size=HIDDEN).astype(np.float32)),
        const("beta", rng.normal(size=HIDDEN).astype(np.float32)),
    ]


def residual_block(layer_norm_axis: int = -1) -> ir.Model:
    """dense(x) + bias + residual -> LayerNorm (the SkipLayerNormalization shape)."""
    inits = _dense_and_norm(np.random.default_rng(RNG_SEED))
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["dense"]),
        helper.make_node("Add", ["dense", "residual"], ["summed"]),
        helper.make_node(
            "LayerNormalization", ["summed", "gamma", "beta"], ["out"], axis=layer_norm_axis, epsilon=1e-12
        ),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
        helper.make_tensor_value_info("residual", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    return model(nodes, inputs, outputs, inits)


def gelu_block(form: str = "erf", cubic: float = 0.044715) -> ir.Model:
    """x + bias -> a GELU as an exporter writes it. form: "erf" (dynamo's 0.5 * x * (1 + erf)
    ... written x * (1 + erf) * 0.5), "erf_python" (x * 0.5 * (1 + erf), gelu_python), "tanh"
    (gelu_new: x + c x^3 with Pow), "tanh_fast" (gelu_fast: x * k * (1 + c x x)). `cubic` is c."""
    rng = np.random.default_rng(RNG_SEED)
    inits = [
        const("b", rng.normal(size=HIDDEN).astype(np.float32)),
        const("half", np.array(0.5, np.float32)),
        const("one", np.array(1.0, np.float32)),
        const("sqrt2", np.array(np.sqrt(2.0), np.float32)),
        const("c", np.array(cubic, np.float32)),
        const("k", np.array(np.sqrt(2 / np.pi), np.float32)),
        const("three", np.array(3.0, np.float32)),
    ]
    # (op, inputs, output) from h = x + b to th = Erf/Tanh(...), then from there to out.
    inner = {
        "tanh": [("Pow", "h three", "h3"), ("Mul", "h3 c", "ch3"), ("Add", "h ch3", "poly"), ("Mul", "poly k", "arg")],
        "tanh_fast": [("Mul", "h k", "hk"), ("Mul", "h h", "h2"), ("Mul", "c h2", "ch2"), ("Add", "one ch2", "poly")]
        + [("Mul", "hk poly", "arg")],
    }.get(form, [("Div", "h sqrt2", "arg")])
    squash = "Tanh" if form.startswith("tanh") else "Erf"
    outer = (
        [("Mul", "h half", "half_h"), ("Mul", "half_h one_plus", "out")]
        if form == "erf_python"
        else [("Mul", "h one_plus", "prod"), ("Mul", "prod half", "out")]
    )
    steps = [("Add", "x b", "h"), *inner, (squash, "arg", "th"), ("Add", "th one", "one_plus"), *outer]
    nodes = [helper.make_node(op, args.split(), [out]) for op, args, out in steps]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    return model(nodes, inputs, outputs, inits)


def classifier_tail(head_index: int = 0, output_hidden: bool = False) -> ir.Model:
    """hidden (B, S, 8) -> a token-mixing op standing in for attention, then a dense + residual
    LayerNorm + ReLU FFN, then Gather(token head_index) -> a classifier. output_hidden: the last
    hidden state (B, S, 8) is a graph output too, so every token of it is needed."""
    rng = np.random.default_rng(RNG_SEED)
    inits = [
        *_dense_and_norm(rng),
        const("W2", rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32)),
        const("Wc", rng.normal(size=(HIDDEN, 3)).astype(np.float32)),
        const("index", np.array(head_index, np.int64)),
    ]
    nodes = [
        helper.make_node("Softmax", ["hidden"], ["mixed"], axis=1),  # mixes tokens, like attention
        helper.make_node("MatMul", ["mixed", "W"], ["dense"]),
        helper.make_node("Add", ["dense", "b"], ["biased"]),
        helper.make_node("Add", ["biased", "hidden"], ["residual"]),  # hidden is read outside the tail too
        helper.make_node("LayerNormalization", ["residual", "gamma", "beta"], ["normed"], axis=-1),
        helper.make_node("MatMul", ["normed", "W2"], ["ffn"]),
        helper.make_node("Relu", ["ffn"], ["act"]),
        helper.make_node("Add", ["act", "normed"], ["last_hidden"]),
        helper.make_node("Gather", ["last_hidden", "index"], ["first"], axis=1),  # (B, 8)
        helper.make_node("MatMul", ["first", "Wc"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])]
    if output_hidden:
        outputs.append(helper.make_tensor_value_info("last_hidden", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]))
    return model(nodes, inputs, outputs, inits)
