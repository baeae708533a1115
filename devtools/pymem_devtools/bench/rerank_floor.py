"""The reranker's floor on this machine: its arithmetic at the matmul rates ORT reaches
here, plus the fastest tokenization, all measured in the same run as the backends.

A query scores ``b`` pairs of ``n`` tokens. With pymem's [CLS]-only last layer
(:mod:`pymem.onnx_export`), a BERT cross-encoder of ``L`` layers, hidden ``h``,
intermediate ``i`` does, in multiply-accumulates:

* weight matmuls: ``(L-1)·b·n·(4h² + 2hi)`` for the full layers, ``b·n·2h²`` for the last
  layer's keys and values, ``b·(2h² + 2hi + h²)`` for the [CLS] row, pooler included;
* attention matmuls (QKᵀ and the weighted sum, fp32 in the int8 graph too): ``(L-1)·b·2n²h``
  plus ``b·2nh`` for the [CLS] row.

The floor of inference is weight work at ORT's int8 (or fp32) GEMM rate plus attention
work at its fp32 batched-matmul rate. Each rate is the best of repeated runs of one ORT
graph of the model's own shapes, with pymem's CPU session options. Everything else
(LayerNorm, GELU, Softmax, adds) is counted as free, so the floor is below what any
implementation can reach. The path's floor adds the median time of the fastest tokenizer
call (``tokenizers``' ``encode_batch_fast``, which skips offsets) for the same pairs.

:func:`op_split` shows how far below any ONNX Runtime graph the floor is: ORT's profiler
splits one run of pymem's own int8 session into matmul ops and the ops the floor counts
as free, so the floor plus those ops, as ORT runs them, is the least a path on these
kernels can take. :func:`work_vs_full_graph` is pymem's share of the arithmetic of the
unpruned graph that the ONNX peers run on the same kernels.
"""

from __future__ import annotations

import bisect
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

RATE_REPEATS = 20
PROFILE_WARM_UP_RUNS = 3
PROFILE_RUNS = 10
#: ONNX Runtime op types that do the matmul work of pymem's graphs after ORT's fusions;
#: in the int8 graph the quantization of their activations is counted with them.
MATMUL_OPS = frozenset({"MatMul", "FusedMatMul", "Gemm", "MatMulInteger", "MatMulIntegerToFloat",
                        "DynamicQuantizeMatMul", "DynamicQuantizeLinear"})


def macs(config: dict, pairs: int, tokens: int, cls_only: bool = True) -> dict[str, float]:
    """Multiply-accumulates of one query, split into weight and attention matmuls."""
    layers, h, i = config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    full = layers - 1 if cls_only else layers
    per_token = 4 * h * h + 2 * h * i
    weight = full * pairs * tokens * per_token + pairs * h * h  # + the pooler
    attention = full * pairs * 2 * tokens * tokens * h
    if cls_only:
        weight += pairs * tokens * 2 * h * h + pairs * per_token
        attention += pairs * 2 * tokens * h
    return {"weight": float(weight), "attention": float(attention)}


def work_vs_full_graph(config: dict, pairs: int, tokens: int) -> float:
    """pymem's arithmetic ([CLS]-only last layer) as a share of the whole graph's."""
    pruned, whole = macs(config, pairs, tokens, cls_only=True), macs(config, pairs, tokens, cls_only=False)
    return round(sum(pruned.values()) / sum(whole.values()), 3)


def op_split(model_path: Path, pairs: int, tokens: int) -> dict:
    """ONNX Runtime's profile of one of pymem's exported graphs scoring ``pairs`` pairs of
    ``tokens`` tokens a run, in a session with pymem's CPU options (run it in a child process).

    Returns:
        per run, as the median of :data:`PROFILE_RUNS` profiled runs after
        :data:`PROFILE_WARM_UP_RUNS`: ``matmul_ms`` (ops in :data:`MATMUL_OPS`), ``other_ms``
        (every other op: what the floor counts as free) and ``other_by_op_ms`` (their mean
        per op type, largest first). Kernel times only: ORT's own scheduling between ops
        is in neither.
    """
    import onnxruntime as ort

    from pymem.rerank.session import cpu_session_options

    with tempfile.TemporaryDirectory(prefix="rerank-profile-") as tmp:
        options = cpu_session_options(ort, 0)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "run")
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        ids = np.random.default_rng(0).integers(1000, 2000, (pairs, tokens), dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feed = {i.name: feed[i.name] for i in session.get_inputs()}
        for _ in range(PROFILE_WARM_UP_RUNS + PROFILE_RUNS):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    per_run = [{"matmul": 0.0, "other": 0.0} for _ in starts]
    other_by_op: Counter = Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        run = bisect.bisect_right(starts, e["ts"]) - 1
        if run < PROFILE_WARM_UP_RUNS:
            continue
        op = e["args"]["op_name"]
        kind = "matmul" if op in MATMUL_OPS else "other"
        per_run[run][kind] += e["dur"] / 1000
        if kind == "other":
            other_by_op[op] += e["dur"] / 1000 / PROFILE_RUNS
    measured = per_run[PROFILE_WARM_UP_RUNS:]
    return {"matmul_ms": round(statistics.median(r["matmul"] for r in measured), 3),
            "other_ms": round(statistics.median(r["other"] for r in measured), 3),
            "other_by_op_ms": {op: round(ms, 3) for op, ms in other_by_op.most_common()}}


def measure(config: dict, tokenizer_file: Path, workload: list, pairs: int, tokens: int,
            cls_only: bool) -> dict:
    """The floor of one (shape, length), in a child process. Times in ms, rates in G/s."""
    import onnxruntime as ort

    work = macs(config, pairs, tokens, cls_only)
    h, i, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    rows = pairs * tokens
    with tempfile.TemporaryDirectory(prefix="rerank-floor-") as tmp:
        rates = {
            "fp32_gemm": _rate(ort, _gemm_graph(Path(tmp), rows, h, i, int8=False), {"x": (rows, h)},
                               2 * rows * h * i),
            "int8_gemm": _rate(ort, _gemm_graph(Path(tmp), rows, h, i, int8=True), {"x": (rows, h)},
                               2 * rows * h * i),
            "fp32_attention": _rate(ort, _attention_graph(Path(tmp)),
                                    {"q": (pairs * heads, tokens, h // heads),
                                     "kt": (pairs * heads, h // heads, tokens)},
                                    2 * pairs * heads * tokens * tokens * (h // heads)),
        }
    tokenize_ms = _tokenize_ms(tokenizer_file, workload, tokens)
    attention_ms = 2 * work["attention"] / rates["fp32_attention"] * 1e3
    infer = {variant: 2 * work["weight"] / rates[f"{variant}_gemm"] * 1e3 + attention_ms
             for variant in ("int8", "fp32")}
    return {"gflop_weight": round(2 * work["weight"] / 1e9, 3),
            "gflop_attention": round(2 * work["attention"] / 1e9, 3),
            "rates_g_per_s": {k: round(v / 1e9, 1) for k, v in rates.items()},
            "tokenize_ms": round(tokenize_ms, 3),
            "inference_ms": {k: round(v, 3) for k, v in infer.items()},
            "path_ms": {k: round(v + tokenize_ms, 3) for k, v in infer.items()}}


def _rate(ort, graph: Path, inputs: dict[str, tuple], ops: float) -> float:
    from pymem.rerank.session import cpu_session_options

    session = ort.InferenceSession(str(graph), cpu_session_options(ort, 0), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in inputs.items()}
    best = float("inf")
    for _ in range(RATE_REPEATS):
        t0 = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return ops / best


def _gemm_graph(tmp: Path, rows: int, k: int, n: int, int8: bool) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(1).standard_normal((k, n), dtype=np.float32) * 0.05, "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])], [weight])
    path = tmp / "gemm_fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    if not int8:
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = tmp / "gemm_int8.onnx"
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)  # as pymem's export
    return quantized


def _attention_graph(tmp: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["q", "kt"], ["s"])], "attention",
                              [helper.make_tensor_value_info("q", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("kt", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)])
    path = tmp / "attention.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def pair_tokenizer(tokenizer_file: Path, tokens: int):
    """A ``tokenizers`` tokenizer truncating (query, candidate) pairs to ``tokens`` as pymem's
    :class:`~pymem.rerank.CrossEncoder` does, unpadded."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(tokens, strategy="longest_first")
    return tokenizer


def _tokenize_ms(tokenizer_file: Path, workload: list, tokens: int) -> float:
    tokenizer = pair_tokenizer(tokenizer_file, tokens)
    samples = []
    for query, candidates in workload:
        t0 = time.perf_counter()
        tokenizer.encode_batch_fast([(query, c) for c in candidates])
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000
